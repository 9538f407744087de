"""Groups of runs of one configuration, and the figures that belong to the group rather
than to any of its runs: a GroupRecord (results/groups/<id>.json and the MLflow parent
run). The runs' own result files are never rewritten.

- tenants=N: the workload alone first, then N copies at once on the same backend, each
  with its configured share, measuring in the same window (a file barrier);
- repeats=N: the same run N times in a row, for the run-to-run variation;
- a scenario's reference (train_ddp: the same training on one process, for the scaling
  efficiency) and a diagnostic's (the probe on the bare GPU, for the compute share)."""

from __future__ import annotations

import dataclasses
import secrets
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

from runners.config import BackendConfig, TrackingConfig
from runners.contracts import (
    FAILED,
    INVALID,
    SUCCESS,
    GroupMember,
    GroupRecord,
    GroupRef,
    Metric,
    Result,
    TenantBarrier,
)
from runners.diagnostics.probe import COMPUTE_SHARE_ACHIEVED, share_verdict
from runners.nvml import visible_gpus
from runners.parent.launch import launch
from runners.parent.plan import Plan, plan, plan_diagnostic

BARRIER_TIMEOUT_S = 600.0
Run = tuple[Result, Path]
Progress = Callable[[str], None]

TENANTS = Metric("tenants", "count", "tenants: copies run at once")
AGGREGATE_THROUGHPUT = Metric(
    "aggregate_throughput", "samples/s", "tenants: sum of the tenants' throughputs over the window all shared"
)
ALONE_THROUGHPUT = Metric("alone_throughput", "samples/s", "tenants: the workload alone on the backend")
JAIN_FAIRNESS = Metric("jain_fairness", "ratio", "tenants: (sum x)^2 / (n sum x^2) of the tenants' throughputs")
MEAN_SLOWDOWN = Metric("mean_slowdown", "ratio", "tenants: mean of alone / tenant throughput (common window)")
MAX_SLOWDOWN = Metric("max_slowdown", "ratio", "tenants: largest alone / tenant throughput")
WINDOW_OVERLAP = Metric("window_overlap", "ratio", "tenants: time all measured together over the longest window")
REPEATS = Metric("repeats", "count", "repeats: runs of the group")
THROUGHPUT_MEAN = Metric("throughput_mean", "samples/s", "repeats: mean throughput over the runs")
THROUGHPUT_STDEV = Metric("throughput_stdev", "samples/s", "repeats: standard deviation of the throughput")
THROUGHPUT_CV = Metric("throughput_cv", "ratio", "repeats: run-to-run variation, stdev / mean")


def new_group(kind: str, plan_: Plan, suffix: str) -> GroupRecord:
    name = f"{plan_.run_name}-{suffix}"
    return GroupRecord(kind=kind, id=f"{name}-{secrets.token_hex(3)}", name=name, members=[], status="failed")


def _finish(group: GroupRecord, runs: list[Run]) -> GroupRecord:
    group.members = [
        GroupMember(r.run_id, r.group.role if r.group else "", r.group.index if r.group else None, r.status)
        for r, _ in runs
    ]
    group.status = SUCCESS if runs and all(r.ok for r, _ in runs) and group.metrics else "failed"
    return group


def jain_fairness(values: list[float]) -> float:
    """(sum x)^2 / (n * sum x^2): 1 when all tenants get the same, 1/n when one gets all."""
    squares = sum(v * v for v in values)
    return sum(values) ** 2 / (len(values) * squares) if squares else 0.0


def window_overlap(windows: list[tuple[float, float]]) -> float:
    """Time all tenants measured together, as a fraction of the longest window."""
    common = min(end for _, end in windows) - max(start for start, _ in windows)
    longest = max(end - start for start, end in windows)
    return max(0.0, common) / longest if longest > 0 else 0.0


def in_common_window(tenants: list[Result]) -> Optional[list[float]]:
    """Each tenant's throughput over the window in which all of them measured: the samples of
    its steps that ended inside it, over its length. A tenant that finished early freed the
    device for the others; their own windows would count that time as contention. None when
    the windows do not overlap."""
    start = max(t.measurement.window[0] for t in tenants)
    end = min(t.measurement.window[1] for t in tenants)
    if end <= start:
        return None
    throughputs = []
    for tenant in tenants:
        m = tenant.measurement
        batch = tenant.config.get("workload", {}).get("batch_size", 1)
        done, steps = m.window[0], 0
        for step_ms in m.step_times_ms:  # each entry ends steps_per_time steps
            done += step_ms * m.steps_per_time / 1e3
            if start <= done <= end:
                steps += m.steps_per_time
        throughputs.append(batch * steps / (end - start))
    return throughputs


def summarize_tenants(group: GroupRecord, alone: Result, tenants: list[Result]) -> None:
    """The group's figures, over the window all tenants shared; none when the run alone or any
    tenant failed."""
    if not alone.ok or not all(t.ok for t in tenants):
        return
    common = in_common_window(tenants)
    if common and all(common):
        throughputs = common
        group.details["window"] = "common: every tenant's steps that ended while all of them measured"
    else:  # no overlap, or a tenant without a step inside it: their own windows, and say so
        throughputs = [t.value("throughput") for t in tenants]
        group.details["window"] = "own: the tenants never measured together; figures from each one's own window"
    slowdowns = [alone.value("throughput") / t for t in throughputs]
    group.details["slowdown"] = {t.run_id: s for t, s in zip(tenants, slowdowns)}
    group.details["throughput_in_window"] = {t.run_id: v for t, v in zip(tenants, throughputs)}
    for metric, value in (
        (TENANTS, len(tenants)),
        (AGGREGATE_THROUGHPUT, sum(throughputs)),
        (ALONE_THROUGHPUT, alone.value("throughput")),
        (JAIN_FAIRNESS, jain_fairness(throughputs)),
        (MEAN_SLOWDOWN, statistics.fmean(slowdowns)),
        (MAX_SLOWDOWN, max(slowdowns)),
        (WINDOW_OVERLAP, window_overlap([tuple(t.measurement.window) for t in tenants])),
    ):
        group.set(metric, value)


def launch_at_once(members: list[tuple[Plan, GroupRef]], barrier_dir: Path, progress: Progress) -> list[Run]:
    """Each plan at once, measuring from the same moment (a file barrier); a run that fails
    releases the others from the barrier at once. The first member reports progress."""
    barrier_dir.mkdir(parents=True)
    timeout = min(BARRIER_TIMEOUT_S, *(p.config.timeout_s for p, _ in members))
    barrier = TenantBarrier(str(barrier_dir), timeout)

    def launch_member(index: int) -> Run:
        plan_, ref = members[index]
        result, run_dir = launch(plan_, progress if index == 0 else lambda _: None, ref, barrier)
        if not result.ok:
            (barrier_dir / f"failed-{index}").touch()
        return result, run_dir

    with ThreadPoolExecutor(max_workers=len(members)) as pool:
        together = list(pool.map(launch_member, range(len(members))))
    for marker in barrier_dir.iterdir():
        marker.unlink()
    barrier_dir.rmdir()
    return together


def launch_together(
    plan_: Plan, group: GroupRecord, count: int, progress: Progress, kind: str = "tenants"
) -> list[Run]:
    """`count` copies of the plan at once, measuring from the same moment."""
    members = [(plan_, GroupRef(kind, group.id, "tenant", index, count)) for index in range(count)]
    return launch_at_once(members, plan_.results_dir / "runs" / f".barrier-{group.id}-{count}", progress)


def run_tenants(plan_: Plan, progress: Progress) -> tuple[GroupRecord, list[Run]]:
    """The run alone, then the tenants together. Call inside the backend's session."""
    count = plan_.config.tenants
    group = new_group("tenants", plan_, f"tenants{count}")
    progress("alone (reference for slowdown)")
    alone = launch(plan_, progress, GroupRef("tenants", group.id, "alone", None, count))
    together = launch_together(plan_, group, count, progress)
    summarize = (plan_.scenario and plan_.scenario.summarize_tenants) or summarize_tenants  # serve: per tenant
    summarize(group, alone[0], [r for r, _ in together])
    return _finish(group, [alone, *together]), [alone, *together]


def summarize_repeats(group: GroupRecord, results: list[Result]) -> None:
    if not results or not all(r.ok for r in results):
        return
    throughputs = [r.value("throughput") for r in results]
    mean = statistics.fmean(throughputs)
    stdev = statistics.stdev(throughputs) if len(throughputs) > 1 else 0.0
    for metric, value in (
        (REPEATS, len(results)),
        (THROUGHPUT_MEAN, mean),
        (THROUGHPUT_STDEV, stdev),
        (THROUGHPUT_CV, stdev / mean),
    ):
        group.set(metric, value)


def run_repeats(plan_: Plan, progress: Progress) -> tuple[GroupRecord, list[Run]]:
    count = plan_.config.repeats
    group = new_group("repeats", plan_, f"repeats{count}")
    runs = []
    for index in range(count):
        progress(f"repeat {index + 1}/{count}")
        runs.append(launch(plan_, progress, GroupRef("repeats", group.id, "repeat", index, count)))
    summarize_repeats(group, [r for r, _ in runs])
    return _finish(group, runs), runs


def run_scaling(plan_: Plan, progress: Progress) -> tuple[Optional[GroupRecord], list[Run]]:
    """A scenario with a reference (train_ddp): the reference run, then the run itself."""
    reference_config = plan_.scenario.reference(plan_.config)
    if reference_config is None:
        return None, [launch(plan_, progress)]
    group = new_group("scaling", plan_, "scaling")
    progress("reference")
    reference = launch(plan(reference_config), progress, GroupRef("scaling", group.id, "reference"))
    progress("scaled")
    run = launch(plan_, progress, GroupRef("scaling", group.id, "scaled"))
    if reference[0].ok and run[0].ok:
        plan_.scenario.summarize(reference[0], run[0], group)
    return _finish(group, [reference, run]), [reference, run]


def judge_share(group: GroupRecord, probe: Result, reference: Result, configured: float) -> None:
    """The compute share the backend gave (the probe's throughput over the bare GPU's) against
    the share it was configured with: a share that does not hold makes the group `invalid`,
    with the reason. Call after _finish; the probe's own result file stays as the worker wrote it."""
    if not reference.ok:
        why = reference.error.message if reference.error else reference.status
        group.details["invalid_because"] = f"the native reference probe did not succeed ({why}): no compute share"
        group.status = FAILED
        return
    measured = probe.value("compute_tflops")
    if probe.status not in (SUCCESS, INVALID) or measured is None:  # failed: _finish said so
        return
    achieved = 100 * measured / reference.value("compute_tflops")
    verdict = share_verdict(configured, achieved)
    group.set(COMPUTE_SHARE_ACHIEVED, achieved)
    group.details.update(
        compute_share_configured=configured,
        compute_share_bound=verdict.bound,
        compute_share_holds=verdict.holds,
        compute_share_testable=verdict.testable,
        compute_share_verdict=verdict.line,
        native_reference_run=reference.run_id,
    )
    # the worker's own verdict (a memory quota that did not hold) and the share's, together
    reasons = [(probe.details.get("probe") or {}).get("invalid_because") or "", "" if verdict.holds else verdict.line]
    reasons = [r for r in reasons if r]
    group.status = INVALID if reasons else SUCCESS
    if reasons:
        group.details["invalid_because"] = "; ".join(reasons)


def run_diagnostic(plan_: Plan, progress: Progress) -> tuple[Optional[GroupRecord], list[Run]]:
    """A backend diagnostic. The probe of a backend with a compute share runs on the bare GPU
    first, before the backend's daemon starts; the share achieved is the pair's figure, and
    its verdict the group's status."""
    reference = native_reference(plan_, progress) if plan_.task == "probe" else None
    with plan_.backend.session():
        if reference is None:
            return None, [launch(plan_, progress)]
        group = new_group("probe_reference", plan_, "share")
        run = launch(plan_, progress, GroupRef("probe_reference", group.id, "probe"))
    _finish(group, [run])
    judge_share(group, run[0], reference, plan_.backend.compute_share())
    return group, [run]


def native_reference(plan_: Plan, progress: Progress) -> Optional[Result]:
    """A probe on the bare GPU, for the share of compute a limited backend achieves (failed or
    not: a failed one leaves the share unjudged, and the group says so). Run before any daemon
    of the backend starts; None where there is no share to judge."""
    if plan_.backend.name == "native" or not plan_.backend.compute_share() or not visible_gpus()[0]:
        return None
    native = dataclasses.replace(
        plan_.config, backend=BackendConfig(name="native"), tracking=TrackingConfig(name="none")
    )
    result, _ = launch(plan_diagnostic(native), progress)
    return result
