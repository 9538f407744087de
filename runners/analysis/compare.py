"""Pair the runs of two sides like for like (every setting that changes the work, except
those the sides are defined by) and decide, per pair, whether the candidate is faster,
slower or equivalent to the baseline, from a 95% confidence interval on the throughput
ratio (runners/analysis/intervals.py); `inconclusive` when the noise is too large to
decide, or when the interval cannot hold what it claims (a side's run-to-run variation
unknown, sides measured in separate blocks of time), with the reason and the runs per side
that would likely decide."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from runners.analysis import intervals
from runners.analysis.intervals import verdict  # noqa: F401 (the verdict rule, imported from here too)
from runners.stats import RunNoise
from runners.tracking.read import Run, Store

KEY_NAMES = ("model", "workload", "precision", "batch_size", "size")


@dataclass
class Row:
    model: str
    workload: str
    precision: str
    batch_size: str
    size: str
    baseline_throughput: float
    candidate_throughput: float
    ratio: float  # candidate / baseline throughput: < 1 is slower
    ci_low: Optional[float]  # the 95% interval on the ratio; None where none holds (`reason` says why)
    ci_high: Optional[float]
    p50_ratio: float  # candidate / baseline latency: > 1 is slower
    p99_ratio: float
    memory_diff_mb: float  # candidate - baseline
    verdict: str
    baseline_runs: int
    candidate_runs: int
    baseline_run_id: str
    candidate_run_id: str
    estimated_overhead_pct: Optional[float] = None  # from the profile and microbenchmarks, when both exist
    settings: str = ""  # the rest of what the pair matched on (inputs, sync, threads, backend knobs...)
    noise: str = ""  # where each side's variance came from (runs, measured, steps only)
    runs_to_decide: Optional[int] = None  # inconclusive: runs per side that would likely decide
    reason: str = ""  # why no verdict could be given (run-to-run noise unknown, sides not interleaved)
    # Start-up (time_to_first_step_s) and its context-creation part, candidate / baseline:
    # where pooling adds context creation through its layer. Energy per sample (GPU only).
    startup_ratio: float = float("nan")
    device_init_ratio: float = float("nan")
    energy_ratio: float = float("nan")
    # Run-to-run variation (throughput CV) measured with repeats=N for each side's configuration,
    # and over how many runs; None: not measured, so a side of one run leaves it out of the interval.
    baseline_run_cv: Optional[float] = None
    baseline_run_cv_runs: Optional[int] = None
    candidate_run_cv: Optional[float] = None
    candidate_run_cv_runs: Optional[int] = None

    @property
    def run_noise_unknown(self) -> bool:
        """A side has one run and no measured run-to-run variation: the interval is too narrow."""
        return "steps only" in self.noise

    @property
    def interval_text(self) -> str:
        """`[low, high]` of the ratio, or why there is none."""
        return f"[{self.ci_low:.3f}, {self.ci_high:.3f}]" if self.ci_low is not None else "(no interval)"

    @property
    def overhead_pct(self) -> float:
        """How much slower the candidate is, in percent of the baseline's throughput."""
        return (1 - self.ratio) * 100


@dataclass
class MicroRow:
    metric: str
    baseline: float
    candidate: float

    @property
    def ratio(self) -> float:
        return self.candidate / self.baseline if self.baseline else float("nan")

    @property
    def worse(self) -> bool:
        """Latencies and times are worse higher, bandwidths and throughputs lower."""
        return self.ratio > 1 if self.metric.endswith(("_us", "_s")) else self.ratio < 1


@dataclass
class Comparison:
    baseline: str
    candidate: str
    tolerance: float
    rows: list[Row]
    missing: list[str]  # pairs found on one side only
    micro: list[MicroRow] = field(default_factory=list)  # microbenchmarks, when both sides have them
    invalid: list[str] = field(default_factory=list)  # runs of either side left out: their layer did not engage
    started_apart: list[str] = field(default_factory=list)  # pairs whose workers started differently

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.verdict == "slower"]

    @property
    def run_noise_unknown(self) -> bool:
        return any(row.run_noise_unknown for row in self.rows)


def _group(runs: list[Run], sides: frozenset[str]) -> dict[tuple, list[Run]]:
    """Every run of a side by the work it measured (newest first): all of them enter the pair."""
    grouped: dict[tuple, list[Run]] = {}
    for run in runs:
        grouped.setdefault(run.work(sides), []).append(run)
    return grouped


_HEADLINE = {"model", "workload", "model_size", "workload.precision", "workload.batch_size"}


def _settings(work: tuple) -> str:
    """What a pair matched on beyond its headline (Run.key)."""
    return " ".join(f"{k.removeprefix('workload.')}={v}" for k, v in work if k not in _HEADLINE)


def _label(runs: list[Run], work: tuple) -> str:
    headline, rest = "/".join(runs[0].key), _settings(work)
    return f"{headline} [{rest}]" if rest else headline


def _metric_ratio(base: list[Run], cand: list[Run], name: str) -> float:
    """Candidate over baseline means of a metric; nan where a side lacks it (a window run has no p50)."""
    mean = lambda runs: float(np.mean([r.metrics.get(name, np.nan) for r in runs]))  # noqa: E731
    baseline = mean(base)
    return mean(cand) / baseline if baseline else float("nan")


HOST_MEMORY = "rusage.ru_maxrss"


def _started_apart(b: list[Run], c: list[Run]) -> Optional[str]:
    """Why start-up (and a host memory peak) is not compared in this pair, or None. A worker
    forked from a fork server skips the imports, and its resident set never counts the pages
    it did not touch again: neither figure says anything of the backend then. Runs recorded
    before fork servers started afresh."""
    start = {side: {r.tags.get("worker_start") or "fresh" for r in runs} for side, runs in (("b", b), ("c", c))}
    if len(start["b"] | start["c"]) == 1:
        return None
    said = lambda kinds: "/".join(sorted(kinds))  # noqa: E731
    return f"baseline {said(start['b'])}, candidate {said(start['c'])}"


def _is_micro(run: Run) -> bool:
    return run.tags.get("task") == "microbench"


def _is_serve(run: Run) -> bool:
    return run.tags.get("workload") == "serve"


def _micro_rows(base: list[Run], cand: list[Run]) -> list[MicroRow]:
    if not base or not cand:
        return []
    b, c = base[0].metrics, cand[0].metrics  # the latest of each side
    names = sorted(k for k in set(b) & set(c) if k.endswith(("_us", "_gbps", "_tflops")) or k == "context_s")
    return [MicroRow(k, b[k], c[k]) for k in names]


def _estimate(store: Store, b: list[Run], base_micro: list[Run], cand_micro: list[Run]) -> Optional[float]:
    from runners.analysis.overhead_attribution import estimate

    profiled = next((r for r in b if any(k.startswith("prof_") for k in r.metrics)), None)
    if not profiled or not base_micro or not cand_micro:
        return None
    found = estimate(
        {k: v for k, v in profiled.metrics.items() if k.startswith("prof_")},
        base_micro[0].metrics,
        cand_micro[0].metrics,
        profiled.metrics.get("latency_ms_mean", 0.0),
        pinned=profiled.params.get("workload.pinned") == "True",
    )
    return found["estimated_overhead_pct"] if found else None


def _side(store: Store, runs: list[Run], noise: Optional[RunNoise]) -> intervals.Side:
    """A side of several runs is their own spread; a side of one run, its configuration's
    measured CV, else only its steps' noise (and then no verdict)."""
    throughputs = [r.metrics["throughput"] for r in runs]
    if len(runs) > 1 or noise:
        return intervals.side(throughputs, noise=noise)
    return intervals.side(throughputs, [store.result(runs[0]).measurement.step_times_ms])


def compare_runs(
    store: Store,
    baseline_runs: list[Run],
    candidate_runs: list[Run],
    tolerance: float,
    baseline: str = "",
    candidate: str = "",
    sides: frozenset[str] = frozenset(),
) -> Comparison:
    """`sides`: the filter keys that define the two sides, left out of the pairing."""
    base_micro = [r for r in baseline_runs if _is_micro(r)]
    cand_micro = [r for r in candidate_runs if _is_micro(r)]
    # A serve run's throughput is the rate it was offered: no verdict on it. Serve runs are
    # compared by their max rate at the SLO (analysis/capacity.py) instead.
    base = _group([r for r in baseline_runs if not _is_micro(r) and not _is_serve(r)], sides)
    cand = _group([r for r in candidate_runs if not _is_micro(r) and not _is_serve(r)], sides)
    rows, started_apart = [], []
    for work in sorted(set(base) & set(cand)):
        b, c = base[work], cand[work]
        # Each side's own run-to-run variation, never the other's: a backend may vary far more
        # than its baseline (lending 2% to a 10% side covered the true ratio 44% of the time).
        b_noise, c_noise = store.run_to_run_cv(b[0]), store.run_to_run_cv(c[0])
        b_side, c_side = _side(store, b, b_noise), _side(store, c, c_noise)
        alternated = intervals.interleaved([r.start_time for r in b], [r.start_time for r in c])
        found = intervals.assess(b_side, c_side, tolerance, alternated)
        # An interval that cannot hold what it claims is not shown anywhere (tables, files, plots)
        ratio, low, high = found.ratio, *((None, None) if found.reason else (found.low, found.high))
        apart = _started_apart(b, c)
        host_memory = any(r.tags.get("memory_source") in (HOST_MEMORY, None) for r in [*b, *c])
        if apart:
            started_apart.append(f"{_label(b, work)}: {apart}")
        rows.append(
            Row(
                *b[0].key,
                baseline_throughput=float(np.mean([r.metrics["throughput"] for r in b])),
                candidate_throughput=float(np.mean([r.metrics["throughput"] for r in c])),
                ratio=ratio,
                ci_low=low,
                ci_high=high,
                p50_ratio=_metric_ratio(b, c, "latency_ms_p50"),
                p99_ratio=_metric_ratio(b, c, "latency_ms_p99"),
                startup_ratio=float("nan") if apart else _metric_ratio(b, c, "time_to_first_step_s"),
                device_init_ratio=_metric_ratio(b, c, "startup_device_init_s"),
                energy_ratio=_metric_ratio(b, c, "energy_j_per_sample"),
                memory_diff_mb=float("nan")
                if apart and host_memory
                else float(
                    np.mean([r.metrics.get("memory_peak_mb", np.nan) for r in c])
                    - np.mean([r.metrics.get("memory_peak_mb", np.nan) for r in b])
                ),
                verdict=found.verdict,
                baseline_runs=len(b),
                candidate_runs=len(c),
                baseline_run_id=b[0].tags["run_id"],
                candidate_run_id=c[0].tags["run_id"],
                estimated_overhead_pct=_estimate(store, b, base_micro, cand_micro),
                baseline_run_cv=b_noise.cv if b_noise else None,
                baseline_run_cv_runs=b_noise.runs if b_noise else None,
                candidate_run_cv=c_noise.cv if c_noise else None,
                candidate_run_cv_runs=c_noise.runs if c_noise else None,
                settings=_settings(work),
                noise=f"{b_side.noise}/{c_side.noise}",
                runs_to_decide=found.runs_to_decide,
                reason=found.reason,
            )
        )
    missing = [f"{_label(base[k], k)}: only in baseline" for k in sorted(set(base) - set(cand))]
    missing += [f"{_label(cand[k], k)}: only in candidate" for k in sorted(set(cand) - set(base))]
    return Comparison(
        baseline, candidate, tolerance, rows, missing, _micro_rows(base_micro, cand_micro), started_apart=started_apart
    )


def compare(
    store: Store,
    baseline: dict[str, str],
    candidate: Optional[dict[str, str]],
    tolerance: float,
    baseline_spec: str,
    candidate_spec: str,
) -> Comparison:
    """`candidate` None: every other run started after the baseline's newest of the same work,
    on the same backend and device (the regression gate); a later CPU run is never judged
    against a GPU baseline, nor a vgpu run against a native one."""
    baseline_runs = store.runs(baseline)
    sides = frozenset(baseline) | frozenset(candidate or {})
    if candidate is not None:
        candidate_runs = store.runs(candidate)
    else:
        newest: dict[tuple, int] = {}
        for run in baseline_runs:
            newest.setdefault(run.work(sides), run.start_time)
        ids = {r.mlflow_id for r in baseline_runs}
        candidate_runs = [
            r
            for r in store.runs({})
            if r.mlflow_id not in ids and r.work(sides) in newest and r.start_time > newest[r.work(sides)]
        ]
    comparison = compare_runs(store, baseline_runs, candidate_runs, tolerance, baseline_spec, candidate_spec, sides)
    comparison_sides = [baseline] + ([candidate] if candidate is not None else [])
    comparison.invalid = sorted({line for side in comparison_sides for line in store.invalid(side)})
    return comparison
