"""The serve searches, in the parent: runs of one serve configuration at several rates or
tenant counts, each an ordinary run (its result file, its MLflow run, a child of the
search's group run).

- `serve.search=capacity`: the highest serve.rate whose run meets the SLO, as MLPerf
  LoadGen's FindPeakPerformance: double (or halve) from serve.rate until a run passes and
  one fails, then bisect until the bracket is within serve.search_tolerance;
- `serve.search=density`: the most tenants, each serving serve.rate, that all meet the SLO
  (1, 2, 3 ... tenants, until a count fails or serve.search_max_runs).

Resumable: with resume=true a probe whose configuration already has a successful result
is read back instead of run again, and the search takes the same path to where it stopped."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

from runners.config import Search
from runners.contracts import FAILED, RESULT_FILE, GroupRecord, GroupRef, Metric, Result, find_successful
from runners.parent.groups import Progress, Run, _finish, launch_together, new_group
from runners.parent.launch import launch
from runners.parent.plan import Plan, plan

MAX_RATE = Metric("max_rate_at_slo", "requests/s", "capacity search: the highest rate tried whose run met the SLO")
LOWER_BOUND = Metric(
    "max_rate_at_slo_is_lower_bound",
    "bool",
    "capacity search: 1 when no rate tried missed the SLO (max_rate_at_slo is a lower bound, 'at least')",
)
FIRST_FAIL = Metric("min_failing_rate", "requests/s", "capacity search: the lowest rate tried whose run missed it")
DENSITY = Metric("density", "count", "density search: the most tenants that all met the SLO at serve.rate")


def find_max_rate(
    passes: Callable[[float], bool], start: float, tolerance: float, max_probes: int
) -> tuple[Optional[float], Optional[float], list[tuple[float, bool]]]:
    """(highest passing rate, lowest failing rate, every (rate, passed) tried in order)."""
    history: list[tuple[float, bool]] = []
    low = high = None
    rate = start
    while len(history) < max_probes:
        passed = passes(rate)
        history.append((rate, passed))
        if passed:
            low = rate
        else:
            high = rate
        if low is None:
            rate = high / 2
        elif high is None:
            rate = low * 2
        elif (high - low) / low <= tolerance:
            break
        else:
            rate = (low + high) / 2
        rate = float(f"{rate:.4g}")  # round rates: the same probes, the same config hashes, on a resume
    return low, high, history


def find_max_count(passes: Callable[[int], bool], most: int) -> tuple[int, list[tuple[int, bool]]]:
    """The largest n in 1..most with passes(1..n) all true (stopping at the first failure)."""
    history: list[tuple[int, bool]] = []
    for n in range(1, most + 1):
        passed = passes(n)
        history.append((n, passed))
        if not passed:
            return n - 1, history
    return most, history


def _crashed(runs: list[Run]) -> bool:
    return any(r.status == FAILED for r, _ in runs)


def met(result: Result) -> bool:
    return result.ok and result.value("slo_met") == 1


def _probe_plan(plan_: Plan, **serve) -> Plan:
    config = plan_.config
    return plan(
        dataclasses.replace(config, tenants=1, serve=dataclasses.replace(config.serve, search=Search.none, **serve))
    )


def _done_before(probe: Plan) -> Optional[Run]:
    if not probe.config.resume:
        return None
    found = find_successful(probe.results_dir, probe.config_hash)
    return (Result.load(found / RESULT_FILE), Path(found)) if found else None


def _summary(result: Result) -> dict:
    v = result.value
    return {
        "run_id": result.run_id,
        "status": result.status,
        "slo_met": v("slo_met"),
        "goodput": v("goodput"),
        "slo_latency_ms_p99": v("slo_latency_ms_p99"),
        "serve_latency_ms_p99": v("serve_latency_ms_p99"),
        "requests_failed": v("requests_failed"),
    }


def capacity(plan_: Plan, progress: Progress) -> tuple[GroupRecord, list[Run]]:
    serve = plan_.config.serve
    group = new_group("capacity", plan_, "capacity")
    runs: list[Run] = []
    probes: list[dict] = []
    late: list[float] = []  # probes whose load generator did not offer their rate

    def passes(rate: float) -> bool:
        probe = _probe_plan(plan_, rate=rate)
        run = _done_before(probe)
        progress(f"capacity: {rate:g} requests/s" + (" (done before)" if run else ""))
        if run is None:
            run = launch(probe, progress, GroupRef("capacity", group.id, "probe", len(runs)))
        runs.append(run)
        probes.append({"rate": rate, **_summary(run[0])})
        if (run[0].details.get("serve") or {}).get("sent_late"):
            late.append(rate)
        return met(run[0])

    low, high, _ = find_max_rate(passes, serve.rate, serve.search_tolerance, serve.search_max_runs)
    group.set(MAX_RATE, low)
    group.set(FIRST_FAIL, high)
    # Every rate tried met the SLO (serve.search_max_runs reached first): the capacity is at
    # least the highest, not found.
    group.set(LOWER_BOUND, float(high is None) if low is not None else None)
    group.details.update(probes=probes, bracket=[low, high], slo=dataclasses.asdict(serve.slo))
    group.details["at_least"] = low is not None and high is None
    group.details["converged"] = low is not None and high is not None and (high - low) / low <= serve.search_tolerance
    group = _finish(group, runs)
    # A probe missing the SLO is what a search is for; one that crashed, or whose generator
    # could not offer its rate (an invalid probe, not a rate the server failed), leaves the
    # answer unknown.
    group.details["late_probes"] = late
    group.status = "success" if low is not None and not _crashed(runs) and not late else "failed"
    return group, runs


def density(plan_: Plan, progress: Progress) -> tuple[GroupRecord, list[Run]]:
    serve = plan_.config.serve
    group = new_group("density", plan_, "density")
    runs: list[Run] = []
    tried: dict[int, bool] = {}

    def passes(count: int) -> bool:
        probe = _probe_plan(plan_)
        progress(f"density: {count} tenant(s) at {serve.rate:g} requests/s each")
        together = launch_together(probe, group, count, progress, kind="density")
        runs.extend(together)
        group.details.setdefault("tenants", {})[str(count)] = [_summary(r) for r, _ in together]
        tried[count] = all(met(r) for r, _ in together)
        return tried[count]

    most, _ = find_max_count(passes, serve.search_max_runs)
    group.set(DENSITY, most)
    group.details.update(rate=serve.rate, tried=tried, slo=dataclasses.asdict(serve.slo))
    group.details["at_least"] = bool(tried) and all(tried.values())  # the cap was reached, not a failing count
    group = _finish(group, runs)
    group.status = "failed" if _crashed(runs) else "success"
    return group, runs


def run(plan_: Plan, progress: Progress) -> tuple[GroupRecord, list[Run]]:
    search = plan_.config.serve.search
    return capacity(plan_, progress) if search is Search.capacity else density(plan_, progress)
