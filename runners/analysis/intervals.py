"""The confidence interval of a throughput ratio: one method for one run, few runs or many.

Each run contributes one number, the log of its throughput, so that what varies from run
to run (placement, clocks, a noisy neighbour) is in the spread, and the steps inside a run,
which correlate, never count as independent samples. A side's mean log-throughput has the
variance of its runs over their count, on n-1 degrees of freedom (Student's t, so two or
three runs give the wide interval they deserve); a run-to-run CV measured elsewhere with
`repeats=N` on the same configuration is pooled in, and stands alone for a side of one
run. Where neither exists the interval holds only the steps' noise, from non-overlapping
block means of the step times (consecutive steps correlate), and says so. The two sides
combine by Welch-Satterthwaite. docs/comparing.md has the coverage this gives, measured by
tests/unit/test_intervals.py."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from scipy import stats

from runners.stats import RunNoise

LEVEL = 0.95


@dataclass(frozen=True)
class Side:
    mean_log: float  # mean over runs of log(throughput)
    variance: float  # of mean_log
    dof: float
    runs: int
    noise: str  # where the variance came from: runs, runs+measured, measured, steps only


def log_sd(cv: float) -> float:
    """The standard deviation of log(x) for a log-normal x with coefficient of variation cv."""
    return math.sqrt(math.log1p(cv * cv))


def step_noise(step_times_ms: Sequence[float]) -> tuple[float, float]:
    """Variance of one run's log-throughput from its step times, and its degrees of freedom:
    the spread of means over about sqrt(n) blocks of consecutive steps, which keeps the
    correlation between neighbouring steps inside the blocks."""
    n = len(step_times_ms)
    if n < 4:
        return 0.0, math.inf
    blocks = max(2, int(math.sqrt(n)))
    size = n // blocks
    means = [sum(step_times_ms[i * size : (i + 1) * size]) / size for i in range(blocks)]
    mean = sum(means) / blocks
    variance = sum((m - mean) ** 2 for m in means) / (blocks - 1)
    return variance / blocks / (mean * mean), blocks - 1


def side(
    throughputs: Sequence[float], step_times_ms: Sequence[Sequence[float]] = (), noise: Optional[RunNoise] = None
) -> Side:
    """One side's estimate. `noise` is pooled in only when it was measured on other runs than
    these (a side that is its own repeat group already shows its variation)."""
    logs = [math.log(t) for t in throughputs]
    n = len(logs)
    mean = sum(logs) / n
    if n >= 2:
        spread = sum((y - mean) ** 2 for y in logs) / (n - 1)
        if noise and noise.runs >= 2:
            pooled = ((n - 1) * spread + (noise.runs - 1) * log_sd(noise.cv) ** 2) / (n + noise.runs - 2)
            return Side(mean, pooled / n, n + noise.runs - 2, n, "runs+measured")
        return Side(mean, spread / n, n - 1, n, "runs")
    if noise and noise.runs >= 2:
        return Side(mean, log_sd(noise.cv) ** 2, noise.runs - 1, 1, "measured")
    variance, dof = step_noise(step_times_ms[0]) if step_times_ms else (0.0, math.inf)
    return Side(mean, variance, dof, 1, "steps only")


def welch_dof(a: Side, b: Side) -> float:
    total = a.variance + b.variance
    terms = sum(s.variance**2 / s.dof for s in (a, b) if s.variance > 0 and math.isfinite(s.dof))
    return total * total / terms if terms > 0 else math.inf


def ratio_interval(baseline: Side, candidate: Side, level: float = LEVEL) -> tuple[float, float, float]:
    """Candidate / baseline throughput (ratio of geometric means) and its `level` interval."""
    difference = candidate.mean_log - baseline.mean_log
    spread = math.sqrt(baseline.variance + candidate.variance)
    dof = welch_dof(baseline, candidate)
    quantile = stats.norm.ppf(0.5 + level / 2) if math.isinf(dof) else stats.t.ppf(0.5 + level / 2, dof)
    half = quantile * spread
    return math.exp(difference), math.exp(difference - half), math.exp(difference + half)


def runs_to_decide(baseline: Side, candidate: Side, tolerance: float) -> Optional[int]:
    """Runs per side that would likely turn an inconclusive pair into a verdict: enough for the
    interval's half-width to fit between the estimate and the nearest tolerance bound, at the
    run-to-run variation seen. None when that variation is unknown (steps only)."""
    if "steps only" in (baseline.noise, candidate.noise):
        return None
    per_run = (baseline.variance * baseline.runs + candidate.variance * candidate.runs) / 2
    difference = candidate.mean_log - baseline.mean_log
    distance = min(abs(difference - math.log1p(-tolerance)), abs(difference - math.log1p(tolerance)))
    distance = max(distance, tolerance / 4)  # an estimate on a bound: say "many", not infinity
    return max(2, math.ceil(2 * per_run * (2.0 / distance) ** 2))
