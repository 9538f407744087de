"""`python -m runners.bench [--multirun] key=value ...` (what `make bench` and `make sweep` run).

All jobs are composed, validated and planned first: bad input exits 2 with one line
before anything runs. Then Hydra runs each job (sweeps included): plan -> worker ->
result file -> MLflow, and a summary table is printed at the end."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from runners import compose, console
from runners.config import BenchConfig
from runners.errors import UsageError
from runners.launch import launch
from runners.plan import plan
from zoo.registry import UnknownName

compose.register()
_completed: list[dict[str, Any]] = []
_HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                           "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}


def run_job(config: BenchConfig) -> dict[str, Any]:
    """One job end to end; never raises for a failure inside the workload."""
    job = plan(config)
    results_dir = Path(config.results_dir).resolve()
    with console.progress(job.run_name) as update:
        result, run_dir = launch(job, results_dir, progress=update)
    row = {"result": result, "run_dir": run_dir, "mlflow_run_id": None, "tracked": True}
    if config.tracking.name == "mlflow":
        from runners.tracking import log_result, tracking_uri

        try:
            row["mlflow_run_id"] = log_result(result, run_dir, config.tracking, results_dir)
        except Exception as exc:  # the result file is kept either way
            row["tracked"] = False
            console.console.print(f"[yellow]warning:[/] could not log {run_dir.name} to MLflow at "
                                  f"{tracking_uri(config.tracking, results_dir)}: {exc}; the result is kept in {run_dir}")
    status = "ok" if result["status"] == "success" else f"FAILED ({result['error']['type']}: {result['error']['message']})"
    console.console.print(f"{job.run_name}: {status} -> {run_dir}")
    _completed.append(row)
    return row


@hydra.main(config_path="../configs", config_name="bench", version_base="1.3")
def _hydra_entry(cfg: DictConfig) -> None:
    run_job(compose.to_config(cfg))


def _split(argv: list[str]) -> tuple[list[str], list[str], bool]:
    """(flags for Hydra, overrides, whether anything but -m was asked of Hydra itself)."""
    flags, overrides, other = [], [], False
    args = iter(argv)
    for arg in args:
        if arg in ("-m", "--multirun"):
            flags.append(arg)
        elif arg.startswith("-"):
            other = True
            flags.append(arg)
            if arg in _HYDRA_FLAGS_WITH_VALUE:
                flags.append(next(args, ""))
        else:
            overrides.append(arg)
    return flags, overrides, other


def validate(overrides: list[str], multirun: bool) -> list[str]:
    """Every job this command would run, checked up front; returns Hydra-ready overrides."""
    ready = compose.check_overrides(overrides)
    for combination in compose.sweep_combinations(ready, multirun):
        plan(compose.compose_config(combination))
    return ready


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags, overrides, hydra_only = _split(argv)
    if not hydra_only:  # --help, --cfg ... are Hydra's own business
        try:
            overrides = validate(overrides, multirun=bool(flags))
        except (UsageError, UnknownName) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    sys.argv = [sys.argv[0], *flags, *overrides]
    _hydra_entry()
    console.print_summary(_completed)
    ok = all(row["result"]["status"] == "success" and row["tracked"] for row in _completed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
