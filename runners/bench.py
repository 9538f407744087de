"""`python -m runners.bench [--multirun] key=value ...` (what `make bench` and `make sweep` run).

All jobs are composed, validated and planned first: bad input exits 2 with one line
before anything runs. Then Hydra runs each job (sweeps included): plan -> worker ->
result file -> MLflow, and a summary table is printed at the end."""
from __future__ import annotations

import dataclasses
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from runners import compose, console, results, tenants
from runners.config import BackendConfig, BenchConfig, TrackingConfig, WorkloadKind, config_hash
from runners.errors import UsageError, one_line
from runners.launch import launch, plan_text
from runners.nvml import visible_gpus
from runners.plan import plan
from runners.redact import redact_value
from runners.tracking import display_name
from zoo.registry import UnknownName

compose.register()
_completed: list[dict[str, Any]] = []
_sweep: dict[str, Any] = {"parent": None}  # the MLflow parent run of this command's sweep, if any
_HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                           "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}


def _track(config: BenchConfig, result: dict[str, Any], run_dir: Path, parent: str | None = None) -> bool:
    """Log one result to MLflow; on failure warn and keep the result file. True when logged."""
    if config.tracking.name != "mlflow":
        return True
    from runners.tracking import log_result, mark_unsynced, tracking_uri

    results_dir = Path(config.results_dir).resolve()
    try:
        log_result(result, run_dir, config.tracking, results_dir, parent_run_id=parent or _sweep["parent"])
        return True
    except Exception as exc:  # the result file is kept either way, marked for `make sync`
        mark_unsynced(run_dir, exc)
        console.console.print(f"[yellow]warning:[/] could not log {run_dir.name} to MLflow at "
                              f"{redact_value(tracking_uri(config.tracking, results_dir))}: {exc}; the result is kept "
                              f"in {run_dir}, marked unsynced: `make sync` logs it later")
        return False


def _report(name: str, result: dict[str, Any], run_dir: Path, tracked: bool) -> None:
    error, metrics = result["error"], result["metrics"]
    status = "ok" if result["status"] == "success" else f"FAILED ({error['type']}: {error['message']})"
    if "ttft_ms_p50" in metrics:
        status += (f" (ttft p50 {metrics['ttft_ms_p50']:.1f} ms, {metrics.get('tpot_ms_mean', 0):.2f} ms per "
                   f"output token, {metrics['output_tokens_per_s']:.1f} output tokens/s)")
    console.console.print(f"{name}: {status} -> {run_dir}")
    _completed.append({"result": result, "run_dir": run_dir, "tracked": tracked})


def _record_group(job, group: str, group_tag: str, summary: dict[str, float],
                  runs: list[tuple[dict[str, Any], Path]]) -> None:
    """Log a group's parent run, then every run of it as a child. A run that cannot be
    logged (the parent included) keeps its result file, marked unsynced."""
    parent = None
    if job.config.tracking.name == "mlflow":
        from runners.tracking import log_group

        try:
            parent = log_group(group, runs[0][0], summary, job.config.tracking, job.results_dir, group_tag,
                               parent_run_id=_sweep["parent"])
        except Exception as exc:
            console.console.print(f"[yellow]warning:[/] could not log group {group} to MLflow: {exc}; "
                                  f"its runs are still logged, or marked unsynced")
    for result, run_dir in runs:
        _report(display_name(result), result, run_dir, _track(job.config, result, run_dir, parent))


def _run_tenants(job, update) -> None:
    (alone, alone_dir), together, group = tenants.run(job, update)
    summary = tenants.summarize(alone, [result for result, _ in together])
    for result, run_dir in together:  # slowdown was added to each tenant's metrics
        results.set_metrics(result, result["metrics"])
        results.write(run_dir / results.RESULT_FILE, result)
    _record_group(job, group, "tenant_group", summary, [(alone, alone_dir), *together])
    if summary:
        console.console.print(
            f"{group}: aggregate {summary['aggregate_throughput']:.2f} samples/s over {job.config.tenants} tenants, "
            f"alone {summary['alone_throughput']:.2f}, mean slowdown {summary['mean_slowdown']:.2f}x, "
            f"Jain fairness {summary['jain_fairness']:.3f}, window overlap {summary['window_overlap']:.0%}")


def _run_repeats(job, update) -> None:
    """The same run `repeats` times in a row; the parent run holds the run-to-run variation."""
    count = job.config.repeats
    group = f"{job.run_name}-r{count}-{secrets.token_hex(3)}"
    runs = []
    for index in range(count):
        update(f"repeat {index + 1}/{count}")
        runs.append(launch(job, update, repeat={"group": group, "index": index, "of": count}))
    throughputs = [r["metrics"]["throughput"] for r, _ in runs if r["status"] == "success"]
    summary = {}
    if len(throughputs) == count:
        mean = statistics.fmean(throughputs)
        stdev = statistics.stdev(throughputs) if count > 1 else 0.0
        summary = {"repeats": count, "throughput_mean": mean, "throughput_stdev": stdev, "throughput_cv": stdev / mean}
    _record_group(job, group, "repeat_group", summary, runs)
    if summary:
        console.console.print(f"{group}: {count} runs, throughput {summary['throughput_mean']:.2f} samples/s, "
                              f"run-to-run variation (CV) {summary['throughput_cv']:.1%}")


def _run_data_parallel(job, update) -> None:
    """train_ddp: the same training on one process first, then on N; scaling efficiency =
    N-process throughput / (N x one-process throughput)."""
    config = job.config  # for CPU ranks, with their share of the cores (plan)
    single = plan(dataclasses.replace(config, workload=dataclasses.replace(config.workload, processes=1)))
    update("one process (reference for scaling)")
    runs = [launch(single, update)] if config.workload.processes > 1 else []
    update(f"{config.workload.processes} processes")
    result, run_dir = launch(job, update)
    if runs and runs[0][0]["status"] == result["status"] == "success":
        one = runs[0][0]["metrics"]["throughput"]
        efficiency = result["metrics"]["throughput"] / (config.workload.processes * one)
        results.set_metrics(result, {**result["metrics"], "single_process_throughput": one,
                                     "scaling_efficiency": efficiency})
        results.write(run_dir / results.RESULT_FILE, result)
    for r, d in [*runs, (result, run_dir)]:
        _report(f"{display_name(r)} x{r['config']['workload']['processes']}", r, d,
                _track(config, r, d))
    if "scaling_efficiency" in result["metrics"]:
        console.console.print(f"{job.run_name}: {config.workload.processes} processes, "
                              f"{result['metrics']['throughput']:.2f} samples/s in all "
                              f"(per rank {', '.join(f'{t:.2f}' for t in result['ddp']['per_rank_throughput'])}), "
                              f"scaling efficiency {result['metrics']['scaling_efficiency']:.0%}")


def _native_reference(config: BenchConfig, update) -> dict[str, Any] | None:
    """A probe on the bare GPU, for the share of compute a limited backend achieves."""
    if config.backend.name == "native" or not visible_gpus()[0]:
        return None
    native = dataclasses.replace(config, backend=BackendConfig(name="native"), tracking=TrackingConfig(name="none"))
    result, _ = launch(plan(native), update)
    return result if result["status"] == "success" else None


def run_job(config: BenchConfig) -> None:
    """One job end to end (all its tenants); never raises for a failure inside a workload."""
    job = plan(config)
    if config.dry_run:
        print(plan_text(job))
        return
    if config.resume:
        done = results.find_successful(job.results_dir, config_hash(job.config))  # as planned, as recorded
        if done:
            console.console.print(f"{job.run_name}: skipped, already done -> {done}")
            _completed.append({"result": results.load(done / results.RESULT_FILE), "run_dir": done, "tracked": True})
            return
    with console.progress(job.run_name) as update:
        reference = None
        if config.workload.kind is WorkloadKind.probe and job.backend.compute_share():
            reference = _native_reference(config, update)  # before any daemon of the backend starts
        with job.backend.session():
            if config.tenants > 1:
                _run_tenants(job, update)
                return
            if config.repeats > 1:
                _run_repeats(job, update)
                return
            if config.workload.kind is WorkloadKind.train_ddp:
                _run_data_parallel(job, update)
                return
            result, run_dir = launch(job, update)
    if reference and result["status"] == "success":
        share = 100 * result["probe"]["compute_tflops"] / reference["probe"]["compute_tflops"]
        result["probe"]["compute_share_achieved"] = share
        result["probe"]["verdicts"]["compute_share_holds"] = abs(share - job.backend.compute_share()) <= 10
        results.set_metrics(result, {**result["metrics"], "compute_share_achieved": share})
        results.write(run_dir / results.RESULT_FILE, result)
    _report(job.run_name, result, run_dir, _track(config, result, run_dir))


@hydra.main(config_path="../configs", config_name="bench", version_base="1.3")
def _hydra_entry(cfg: DictConfig) -> None:
    try:
        run_job(compose.to_config(cfg))
    except UsageError as exc:  # e.g. a daemon that would not start: nothing ran
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)


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


MIN_FREE_MB = 200


def check_output_dir(results_dir: Path) -> None:
    """Fail before anything starts when results cannot be written."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results_dir, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"results_dir {results_dir} is not writable ({exc.strerror or exc}); "
                         f"choose another with results_dir=<path> or VGPU_BENCH_RESULTS") from None
    free_mb = shutil.disk_usage(results_dir).free / 2**20
    if free_mb < MIN_FREE_MB:
        raise UsageError(f"results_dir {results_dir} has {free_mb:.0f} MiB free, less than the {MIN_FREE_MB} MiB "
                         f"a run may need; free some space or choose another results_dir")


def validate(overrides: list[str], multirun: bool) -> tuple[list[str], list[BenchConfig]]:
    """Every job this command would run, checked up front; returns Hydra-ready overrides."""
    ready = compose.check_overrides(overrides)
    configs = [compose.compose_config(combination) for combination in compose.sweep_combinations(ready, multirun)]
    for config in configs:
        plan(config)
    for results_dir in {Path(c.results_dir).resolve() for c in configs if not c.dry_run}:
        check_output_dir(results_dir)
    return ready, configs


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM: the same orderly stop as Ctrl-C


def _start_sweep(overrides: list[str], configs: list[BenchConfig]) -> None:
    """One parent run per sweep, when all of its jobs log to the same MLflow store."""
    trackers = {(c.tracking.name, c.tracking.uri, c.tracking.experiment, c.results_dir) for c in configs}
    if len(trackers) != 1 or configs[0].tracking.name != "mlflow" or configs[0].dry_run:
        return
    from runners.tracking import start_sweep

    config = configs[0]
    try:
        _sweep.update(parent=start_sweep(overrides, config.tracking, Path(config.results_dir).resolve()), config=config)
    except Exception as exc:  # runs are still recorded as files; the sweep just has no parent
        console.console.print(f"[yellow]warning:[/] could not start the sweep's MLflow run: {exc}")


def _end_sweep() -> None:
    if not _sweep["parent"]:
        return
    from runners.tracking import end_sweep

    config = _sweep["config"]
    failed = sum(row["result"]["status"] != "success" for row in _completed)
    try:
        end_sweep(_sweep["parent"], len(_completed), failed, config.tracking, Path(config.results_dir).resolve())
    except Exception as exc:
        console.console.print(f"[yellow]warning:[/] could not close the sweep's MLflow run: {exc}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags, overrides, hydra_only = _split(argv)
    if not hydra_only:  # --help, --cfg ... are Hydra's own business
        try:
            overrides, configs = validate(overrides, multirun=bool(flags))
        except (UsageError, UnknownName) as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            return 2
        if flags:
            _start_sweep(overrides, configs)
    sys.argv = [sys.argv[0], *flags, *overrides]
    signal.signal(signal.SIGTERM, _terminate)
    interrupted = False
    try:
        _hydra_entry()
    except KeyboardInterrupt:  # the worker was stopped and daemons torn down on the way out
        interrupted = True
    finally:
        _end_sweep()
    console.print_summary(_completed)
    if interrupted:
        print(f"interrupted: {len(_completed)} finished run(s) kept; run the same command with resume=true to "
              f"run only what did not finish", file=sys.stderr)
        return 130
    ok = all(row["result"]["status"] == "success" and row["tracked"] for row in _completed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
