"""Pair the runs of two sides and decide, per pair, whether the candidate is faster,
slower or equivalent to the baseline, with a 95% confidence interval on the throughput
ratio; `inconclusive` when the noise is too large to decide."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from runners.tracking.read import Run, Store

BOOTSTRAP_SAMPLES = 2000
RunNoise = tuple[float, int]  # run-to-run CV of throughput, and how many runs measured it
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
    ci_low: float
    ci_high: float
    p50_ratio: float  # candidate / baseline latency: > 1 is slower
    p99_ratio: float
    memory_diff_mb: float  # candidate - baseline
    verdict: str
    baseline_runs: int
    candidate_runs: int
    baseline_run_id: str
    candidate_run_id: str
    estimated_overhead_pct: Optional[float] = None  # from the profile and microbenchmarks, when both exist
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
        return (
            (self.baseline_runs == 1 or self.candidate_runs == 1)
            and self.baseline_run_cv is None
            and self.candidate_run_cv is None
        )

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

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.verdict == "slower"]

    @property
    def run_noise_unknown(self) -> bool:
        return any(row.run_noise_unknown for row in self.rows)


def throughput_ratio_ci(
    baseline: list[tuple[int, list[float]]],
    candidate: list[tuple[int, list[float]]],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    baseline_noise: Optional[RunNoise] = None,
    candidate_noise: Optional[RunNoise] = None,
) -> tuple[float, float, float]:
    """Ratio of candidate to baseline throughput and its 95% bootstrap interval.

    Each side is a list of runs (batch size, per-step times). The bootstrap resamples
    runs, then steps within each run, so with repeated runs the interval includes the
    run-to-run variation and not only the step-to-step noise. A side of one run cannot
    show that variation: its noise (a CV measured elsewhere over n repeated runs) enters
    as a random factor per bootstrap sample, exp(CV x t) with t from Student's t with n-1
    degrees of freedom, since a CV measured over few runs may well be an underestimate."""
    rng = np.random.default_rng(seed)

    def throughput(runs) -> float:
        return sum(b * len(t) for b, t in runs) / (sum(sum(t) for _, t in runs) / 1e3)

    def resampled(runs) -> np.ndarray:
        picks = rng.integers(0, len(runs), size=(samples, len(runs)))
        samples_out = np.zeros(samples)
        work = np.zeros(samples)
        for j, (batch, times) in enumerate(runs):
            times = np.asarray(times)
            steps = times[rng.integers(0, len(times), size=(samples, len(times)))]
            totals = steps.sum(axis=1) / 1e3
            chosen = (picks == j).sum(axis=1)  # how often run j was drawn in each sample
            samples_out += chosen * totals
            work += chosen * batch * len(times)
        return work / samples_out

    def with_run_noise(runs, noise: Optional[RunNoise]) -> np.ndarray:
        values = resampled(runs)
        if len(runs) > 1 or noise is None:
            return values
        cv, measured_over = noise
        return values * np.exp(cv * rng.standard_t(measured_over - 1, samples))

    ratio = throughput(candidate) / throughput(baseline)
    distribution = with_run_noise(candidate, candidate_noise) / with_run_noise(baseline, baseline_noise)
    low, high = np.percentile(distribution, [2.5, 97.5])
    return ratio, float(low), float(high)


def verdict(low: float, high: float, tolerance: float) -> str:
    if high < 1 - tolerance:
        return "slower"
    if low > 1 + tolerance:
        return "faster"
    if low >= 1 - tolerance and high <= 1 + tolerance:
        return "equivalent"
    return "inconclusive"  # the interval straddles a tolerance bound: noise too large to decide


def _group(store: Store, runs: list[Run]) -> dict[tuple, list[Run]]:
    """Per pair key, the latest run and the other runs of its repeat group."""
    latest: dict[tuple, list[Run]] = {}
    for run in runs:  # newest first
        if run.key not in latest:
            group = run.tags.get("group_id") if run.tags.get("group_kind") == "repeats" else None
            latest[run.key] = [r for r in runs if group and r.tags.get("group_id") == group] or [run]
    return latest


def _steps(store: Store, run: Run) -> tuple[int, list[float]]:
    return run.batch_size, store.result(run).measurement.step_times_ms


def _metric_ratio(base: list[Run], cand: list[Run], name: str) -> float:
    """Candidate over baseline means of a metric; nan where a side lacks it (a window run has no p50)."""
    mean = lambda runs: float(np.mean([r.metrics.get(name, np.nan) for r in runs]))  # noqa: E731
    baseline = mean(base)
    return mean(cand) / baseline if baseline else float("nan")


def _is_micro(run: Run) -> bool:
    return run.tags.get("task") == "microbench"


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


def compare_runs(
    store: Store,
    baseline_runs: list[Run],
    candidate_runs: list[Run],
    tolerance: float,
    baseline: str = "",
    candidate: str = "",
) -> Comparison:
    base_micro = [r for r in baseline_runs if _is_micro(r)]
    cand_micro = [r for r in candidate_runs if _is_micro(r)]
    base = _group(store, [r for r in baseline_runs if not _is_micro(r)])
    cand = _group(store, [r for r in candidate_runs if not _is_micro(r)])
    rows = []
    for key in sorted(set(base) & set(cand)):
        b, c = base[key], cand[key]
        b_noise, c_noise = store.run_to_run_cv(b[0]), store.run_to_run_cv(c[0])
        # Where only one side's configuration was measured, the other's noise is taken to be alike:
        # the same machine, and an unmeasured variation is not an absent one.
        b_noise, c_noise = b_noise or c_noise, c_noise or b_noise
        ratio, low, high = throughput_ratio_ci(
            [_steps(store, r) for r in b],
            [_steps(store, r) for r in c],
            baseline_noise=b_noise,
            candidate_noise=c_noise,
        )
        rows.append(
            Row(
                *key,
                baseline_throughput=float(np.mean([r.metrics["throughput"] for r in b])),
                candidate_throughput=float(np.mean([r.metrics["throughput"] for r in c])),
                ratio=ratio,
                ci_low=low,
                ci_high=high,
                p50_ratio=_metric_ratio(b, c, "latency_ms_p50"),
                p99_ratio=_metric_ratio(b, c, "latency_ms_p99"),
                startup_ratio=_metric_ratio(b, c, "time_to_first_step_s"),
                device_init_ratio=_metric_ratio(b, c, "startup_device_init_s"),
                energy_ratio=_metric_ratio(b, c, "energy_j_per_sample"),
                memory_diff_mb=float(
                    np.mean([r.metrics.get("memory_peak_mb", np.nan) for r in c])
                    - np.mean([r.metrics.get("memory_peak_mb", np.nan) for r in b])
                ),
                verdict=verdict(low, high, tolerance),
                baseline_runs=len(b),
                candidate_runs=len(c),
                baseline_run_id=b[0].tags["run_id"],
                candidate_run_id=c[0].tags["run_id"],
                estimated_overhead_pct=_estimate(store, b, base_micro, cand_micro),
                baseline_run_cv=b_noise and b_noise[0],
                baseline_run_cv_runs=b_noise and b_noise[1],
                candidate_run_cv=c_noise and c_noise[0],
                candidate_run_cv_runs=c_noise and c_noise[1],
            )
        )
    missing = [f"{'/'.join(k)}: only in baseline" for k in sorted(set(base) - set(cand))]
    missing += [f"{'/'.join(k)}: only in candidate" for k in sorted(set(cand) - set(base))]
    return Comparison(baseline, candidate, tolerance, rows, missing, _micro_rows(base_micro, cand_micro))


def compare(
    store: Store,
    baseline: dict[str, str],
    candidate: Optional[dict[str, str]],
    tolerance: float,
    baseline_spec: str,
    candidate_spec: str,
) -> Comparison:
    """`candidate` None: every other run started after the baseline's (the regression gate)."""
    baseline_runs = store.runs(baseline)
    if candidate is not None:
        candidate_runs = store.runs(candidate)
    else:
        newest = {}
        for run in baseline_runs:
            newest.setdefault(run.key, run.start_time)
        ids = {r.mlflow_id for r in baseline_runs}
        candidate_runs = [
            r for r in store.runs({}) if r.mlflow_id not in ids and r.key in newest and r.start_time > newest[r.key]
        ]
    comparison = compare_runs(store, baseline_runs, candidate_runs, tolerance, baseline_spec, candidate_spec)
    sides = [baseline] + ([candidate] if candidate is not None else [])
    comparison.invalid = sorted({line for side in sides for line in store.invalid(side)})
    return comparison
