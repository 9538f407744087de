"""`python -m runners.cli.bench [--multirun] key=value ...` (`make bench`, `make sweep`,
`make profile`).

Every job is composed, validated and planned first: bad input exits 2 with one line
before anything runs. Then each plan runs: worker -> result file -> MLflow, and a summary
table is printed at the end. A sweep that names a Hydra launcher (hydra/launcher=slurm,
local, ray) is handed to Hydra, which runs each job where the launcher puts it.

A little over ~300 lines: the command's whole path from composition to exit code (with
the session that records runs and groups, and the Hydra launcher entry) reads in one file."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Optional

import hydra

from runners.config import Aggressor, BenchConfig, Search
from runners.contracts import GroupRecord, find_successful
from runners.errors import USER_ERRORS, UsageError, one_line
from runners.parent import compose, groups, interference, search, serve_lines
from runners.parent.console import Finished, console, print_summary, progress, status_line
from runners.parent.launch import launch, plan_text
from runners.parent.plan import Plan, plan
from runners.redact import redact_value

MIN_FREE_MB = 200
_HYDRA_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--info",
    "-i",
    "--experimental-rerun",
}


@dataclasses.dataclass
class Session:
    """What one command has run so far, and the MLflow parent run of its sweep, if any."""

    finished: list[Finished] = dataclasses.field(default_factory=list)
    sweep_run: Optional[str] = None

    def track(
        self, config: BenchConfig, finished: Finished, parent: Optional[str] = None, group: Optional[GroupRecord] = None
    ) -> Finished:
        """Log one result to MLflow; on failure warn and keep the result file, marked unsynced."""
        if config.tracking.name == "mlflow":
            from runners.tracking.write import log_result, mark_unsynced, tracking_uri

            results_dir = Path(config.results_dir).resolve()
            try:
                log_result(
                    finished.result,
                    finished.run_dir,
                    config.tracking,
                    results_dir,
                    parent_run_id=parent or self.sweep_run,
                )
            except Exception as exc:  # the result file is kept either way, marked for `make sync`
                mark_unsynced(finished.run_dir, exc)
                finished.tracked = False
                console.print(
                    f"[yellow]warning:[/] could not log {finished.run_dir.name} to MLflow at "
                    f"{redact_value(tracking_uri(config.tracking, results_dir))}: {exc}; the result is "
                    f"kept in {finished.run_dir}, marked unsynced: `make sync` logs it later"
                )
        self.finished.append(finished)
        result = finished.result
        extra = ""
        if "ttft_ms_p50" in result.metrics:
            extra = (
                f" (ttft p50 {result.value('ttft_ms_p50'):.1f} ms, {result.value('tpot_ms_mean', 0):.2f} ms per "
                f"output token, {result.value('output_tokens_per_s'):.1f} output tokens/s)"
            )
        extra += serve_lines.run_line(result)
        console.print(f"{result.display_name}: {status_line(result, group)}{extra} -> {finished.run_dir}")
        for warning in serve_lines.warnings(result):
            console.print(f"  [yellow]warning:[/] {warning}")
        return finished

    def record_group(self, config, group: Optional[GroupRecord], runs: list) -> None:
        """The group's record file and parent run first, then every run of it as a child."""
        parent = None
        if group is not None:
            results_dir = Path(config.results_dir).resolve()
            group.write(results_dir)
            if config.tracking.name == "mlflow":
                from runners.tracking.write import log_group

                try:
                    parent = log_group(group, runs[0][0], config.tracking, results_dir, self.sweep_run)
                except Exception as exc:
                    console.print(
                        f"[yellow]warning:[/] could not log group {group.id} to MLflow: {exc}; "
                        f"its runs are still logged, or marked unsynced"
                    )
        for result, run_dir in runs:
            self.track(config, Finished(result, run_dir, True), parent, group)


def _describe_group(group: GroupRecord, config: BenchConfig) -> Optional[str]:
    serve_line = serve_lines.group_line(group)
    if serve_line:
        return serve_line
    if group.status != "success":
        return None
    v = group.value
    if group.kind == "tenants":
        return (
            f"{group.id}: aggregate {v('aggregate_throughput'):.2f} samples/s over {config.tenants} tenants, "
            f"alone {v('alone_throughput'):.2f}, mean slowdown {v('mean_slowdown'):.2f}x, "
            f"Jain fairness {v('jain_fairness'):.3f}, window overlap {v('window_overlap'):.0%}"
        )
    if group.kind == "repeats":
        return (
            f"{group.id}: {config.repeats} runs, throughput {v('throughput_mean'):.2f} samples/s, "
            f"run-to-run variation (CV) {v('throughput_cv'):.1%}"
        )
    if group.kind == "scaling":
        return (
            f"{group.id}: {config.workload.processes} processes, scaling efficiency "
            f"{v('scaling_efficiency'):.0%} (one process {v('single_process_throughput'):.2f} samples/s)"
        )
    return None


def run_plan(plan_: Plan, session: Session) -> None:
    """One job end to end (all its tenants, repeats, references); never raises for a failure inside a workload."""
    config = plan_.config
    if config.dry_run:
        print(plan_text(plan_))
        return
    if config.resume:
        done = find_successful(plan_.results_dir, plan_.config_hash)
        if done:
            from runners.contracts import RESULT_FILE, Result

            console.print(f"{plan_.run_name}: skipped, already done -> {done}")
            session.finished.append(Finished(Result.load(done / RESULT_FILE), done, True))
            return
    with progress(plan_.run_name) as update, plan_.backend.session():
        if config.workload.kind == "serve" and config.serve.search is not Search.none:
            group, runs = search.run(plan_, update)
        elif config.workload.kind == "serve" and config.serve.aggressor is not Aggressor.none:
            group, runs = interference.run(plan_, update)
        elif config.tenants > 1:
            group, runs = groups.run_tenants(plan_, update)
        elif config.repeats > 1:
            group, runs = groups.run_repeats(plan_, update)
        elif plan_.scenario.reference(config) is not None:
            group, runs = groups.run_scaling(plan_, update)
        else:
            group, runs = None, [launch(plan_, update)]
    session.record_group(config, group, runs)
    if group is not None and _describe_group(group, config):
        console.print(_describe_group(group, config))


def check_output_dir(results_dir: Path) -> None:
    """Fail before anything starts when results cannot be written."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results_dir, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise UsageError(
            f"results_dir {results_dir} is not writable ({exc.strerror or exc}); "
            f"choose another with results_dir=<path> or VGPU_BENCH_RESULTS"
        ) from None
    free_mb = shutil.disk_usage(results_dir).free / 2**20
    if free_mb < MIN_FREE_MB:
        raise UsageError(
            f"results_dir {results_dir} has {free_mb:.0f} MiB free, less than the {MIN_FREE_MB} MiB "
            f"a run may need; free some space or choose another results_dir"
        )


def validate(overrides: list[str], multirun: bool) -> tuple[list[str], list[Plan]]:
    """Every job this command would run, composed and planned once, up front."""
    ready = compose.check_overrides(overrides)
    plans = [plan(compose.compose_config(combination)) for combination in compose.sweep_combinations(ready, multirun)]
    for results_dir in {p.results_dir for p in plans if not p.config.dry_run}:
        check_output_dir(results_dir)
    return ready, plans


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


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM: the same orderly stop as Ctrl-C


def _start_sweep(session: Session, overrides: list[str], plans: list[Plan]) -> Optional[BenchConfig]:
    """One parent run per sweep, when all of its jobs log to the same MLflow store."""
    configs = [p.config for p in plans]
    trackers = {(c.tracking.name, c.tracking.uri, c.tracking.experiment, c.results_dir) for c in configs}
    if len(trackers) != 1 or configs[0].tracking.name != "mlflow" or configs[0].dry_run:
        return None
    from runners.tracking.write import start_sweep

    try:
        session.sweep_run = start_sweep(overrides, configs[0].tracking, Path(configs[0].results_dir).resolve())
        return configs[0]
    except Exception as exc:  # runs are still recorded as files; the sweep just has no parent
        console.print(f"[yellow]warning:[/] could not start the sweep's MLflow run: {exc}")
        return None


def _end_sweep(session: Session, config: Optional[BenchConfig]) -> None:
    if not session.sweep_run or config is None:
        return
    from runners.tracking.write import end_sweep

    failed = sum(not row.result.ok for row in session.finished)
    try:
        end_sweep(session.sweep_run, len(session.finished), failed, config.tracking, Path(config.results_dir).resolve())
    except Exception as exc:
        console.print(f"[yellow]warning:[/] could not close the sweep's MLflow run: {exc}")


@hydra.main(config_path=str(compose.CONFIG_DIR), config_name="bench", version_base="1.3")
def _hydra_task(cfg) -> None:
    """One job as Hydra's launcher runs it (at module level: cluster launchers pickle it)."""
    session = Session()
    try:
        run_plan(plan(compose.to_config(cfg)), session)
    except USER_ERRORS as exc:  # e.g. a daemon that would not start: nothing ran
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    print_summary(session.finished)


def _through_hydra(flags: list[str], overrides: list[str]) -> None:
    """Hydra's own runtime, for its launchers (a cluster) and its own flags (--help, --cfg)."""
    compose.register()
    sys.argv = [sys.argv[0], *flags, *overrides]
    _hydra_task()


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags, overrides, hydra_only = _split(argv)
    if hydra_only:  # --help, --cfg ... are Hydra's own business
        _through_hydra(flags, overrides)
        return 0
    try:
        overrides, plans = validate(overrides, multirun=bool(flags))
    except USER_ERRORS as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    if any(o.lstrip("+").startswith("hydra/launcher=") for o in overrides):
        _through_hydra(flags, overrides)
        return 0
    session = Session()
    sweep_config = _start_sweep(session, overrides, plans) if flags else None
    signal.signal(signal.SIGTERM, _terminate)
    interrupted = False
    try:
        for plan_ in plans:
            try:
                run_plan(plan_, session)
            except UsageError as exc:  # e.g. a daemon that would not start: nothing of this job ran
                print(f"error: {one_line(exc)}", file=sys.stderr)
                return 2
    except KeyboardInterrupt:  # the worker was stopped and daemons torn down on the way out
        interrupted = True
    finally:
        _end_sweep(session, sweep_config)
    print_summary(session.finished)
    if interrupted:
        print(
            f"interrupted: {len(session.finished)} finished run(s) kept; run the same command with resume=true "
            f"to run only what did not finish",
            file=sys.stderr,
        )
        return 130
    return 0 if all(row.result.ok and row.tracked for row in session.finished) else 1


if __name__ == "__main__":
    # Through the importable module, not __main__: cluster launchers pickle the task by reference.
    from runners.cli.bench import main as importable_main

    sys.exit(importable_main())
