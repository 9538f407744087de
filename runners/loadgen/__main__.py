"""`python -m runners.loadgen <socket fd> <spec.json> <records.json>` (started by the worker)."""

import json
import socket
import sys

from runners.loadgen.generator import Spec, run, write_records

if __name__ == "__main__":
    fd, spec_path, out_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    sock = socket.socket(fileno=fd)
    spec = Spec(**json.loads(open(spec_path).read()))
    write_records(run(sock, spec), out_path)
