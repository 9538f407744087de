"""`python -m runners.worker <run-dir>/job.json`: the isolated worker process."""

import sys

from runners.worker.main import leave, main

leave(main(sys.argv[1:]))
