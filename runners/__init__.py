"""vgpu-bench runners. The path of a module says which process runs it:

- cli/          the commands users run (python -m runners.cli.<command>)
- parent/       the orchestrating process: compose, plan, launch, groups of runs, console
- worker/       the isolated worker process: measurement loop, framework adapters, fingerprint
- scenarios/    one module per workload kind: its knobs, what the worker does, derived figures
- diagnostics/  backend diagnostics run in a worker (quota probe, microbenchmarks)
- backends/     how a worker gets its device (environment, daemon, preflight)
- tracking/     result files <-> MLflow (write, read, sync)
- analysis/     comparisons, overhead attribution, parity checks, tables, report

Modules at this level (config, contracts, names, errors, redact, stats, nvml, suite) are
shared by every process and need nothing but the standard library."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# MLflow 3 reports usage from a thread of every process that imports it (a name lookup, then
# HTTPS to its servers) unless it sees this or a CI's variables; nothing of the suite talks to
# the network at run time. Set before any runners module can import mlflow.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
