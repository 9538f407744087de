"""The confidence interval of a throughput ratio: one method for one run, few runs or many.

Each run contributes one number, the log of its throughput, so that what varies from run
to run (placement, clocks, a noisy neighbour) is in the spread, and the steps inside a run,
which correlate, never count as independent samples. A side's mean log-throughput has the
variance of its runs over their count, on n-1 degrees of freedom (Student's t, so two or
three runs give the wide interval they deserve); a run-to-run CV measured elsewhere with
`repeats=N` on the same configuration stands for a side of one run. Where neither exists
the interval holds only the steps' noise, from non-overlapping block means of the step
times (consecutive steps correlate): no verdict rests on it. The two sides combine by
Welch-Satterthwaite. Runs of the two sides that did not alternate in time
give no verdict either: drift between blocks of time is not in either side's spread.
docs/comparing.md has the coverage this gives, measured by tests/unit/test_intervals.py."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from scipy import special

from runners.stats import RunNoise

LEVEL = 0.95


@dataclass(frozen=True)
class Side:
    mean_log: float  # mean over runs of log(throughput)
    variance: float  # of mean_log
    dof: float
    runs: int
    noise: str  # where the variance came from: runs, measured, steps only


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
    """One side's estimate. `noise`, a run-to-run CV measured with repeats=N on other runs of the
    same work, stands for a side of one run only: pooled into a side of several runs alternated
    with the other side's, it left out the drift their spread holds (coverage 0.875 at 2 runs a
    side, 2% CV, a 5% per-run drift walk, simulated)."""
    logs = [math.log(t) for t in throughputs]
    n = len(logs)
    mean = sum(logs) / n
    if n >= 2:  # its own spread only: a CV measured in another block of time lacks the drift between
        spread = sum((y - mean) ** 2 for y in logs) / (n - 1)
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
    quantile = float(special.stdtrit(dof, 0.5 + level / 2))  # Student's t; the normal's at infinite dof
    half = quantile * spread
    return math.exp(difference), math.exp(difference - half), math.exp(difference + half)


def verdict(low: float, high: float, tolerance: float) -> str:
    if high < 1 - tolerance:
        return "slower"
    if low > 1 + tolerance:
        return "faster"
    if low >= 1 - tolerance and high <= 1 + tolerance:
        return "equivalent"
    return "inconclusive"  # the interval straddles a tolerance bound: noise too large to decide


def runs_to_decide(baseline: Side, candidate: Side, tolerance: float, cap: int = 1000) -> int:
    """Runs per side that would likely turn an inconclusive pair into a verdict: the fewest n
    whose interval (Student's t on the 2(n - 1) degrees of freedom of two sides of n runs) fits
    between the estimate and the nearest tolerance bound, at the per-run variation these sides
    show. For a side whose run-to-run variation is unknown that is its step noise, which every
    run has at least: then n is a floor (more run-to-run variation needs more runs)."""
    per_run = (baseline.variance * baseline.runs + candidate.variance * candidate.runs) / 2
    difference = candidate.mean_log - baseline.mean_log
    distance = min(abs(difference - math.log1p(-tolerance)), abs(difference - math.log1p(tolerance)))
    distance = max(distance, tolerance / 4)  # an estimate on a bound: say "many", not infinity
    # t > z: the normal approximation's n is a lower bound to start from
    n = max(2, math.ceil(2 * per_run * (special.ndtri(0.5 + LEVEL / 2) / distance) ** 2))
    while n < cap and special.stdtrit(2 * (n - 1), 0.5 + LEVEL / 2) * math.sqrt(2 * per_run / n) > distance:
        n += 1
    return min(n, cap)


def interleaved(baseline_starts: Sequence[float], candidate_starts: Sequence[float]) -> bool:
    """Whether the sides' runs alternated in time, so that a machine drifting (clocks, heat, a
    tenant arriving) weighs on both alike and shows in each side's spread: each side has two
    runs or more, and in start order the sides' mean places are at most one place apart
    (a,b,a,b and a,b,b,a are; a,a,b,b, a,a,a,b,a,b and one run a side are not)."""
    if min(len(baseline_starts), len(candidate_starts)) < 2:
        return False
    order = sorted([(t, 0) for t in baseline_starts] + [(t, 1) for t in candidate_starts])
    places = [[i for i, (_, side) in enumerate(order) if side == s] for s in (0, 1)]
    return abs(sum(places[0]) / len(places[0]) - sum(places[1]) / len(places[1])) <= 1


@dataclass(frozen=True)
class Assessment:
    ratio: float
    low: float  # the interval from what is known; no verdict rests on it where `reason` is set
    high: float
    verdict: str
    reason: str = ""  # why no verdict could be given, whatever the interval says
    runs_to_decide: Optional[int] = None


def assess(baseline: Side, candidate: Side, tolerance: float, alternated: bool) -> Assessment:
    """The ratio, its interval and a verdict, or `inconclusive` with the reason where the
    interval cannot hold what it claims: a side's run-to-run variation unknown (one run, none
    measured: its steps' noise alone called 73% of identical pairs different, simulated at a
    5% run-to-run CV), or sides measured in separate blocks of time (drift between the blocks
    reads as a difference: 0.788 [0.724, 0.857] `slower` for one configuration, measured)."""
    ratio, low, high = ratio_interval(baseline, candidate)
    if "steps only" in (baseline.noise, candidate.noise):
        needed = runs_to_decide(baseline, candidate, tolerance)
        reason = f"run-to-run noise unknown, repeats>={needed} would decide"
        return Assessment(ratio, low, high, "inconclusive", reason, needed)
    if not alternated:
        needed = runs_to_decide(baseline, candidate, tolerance)
        reason = f"sides not interleaved in time (drift unmeasured): make ab repeats>={needed} would decide"
        return Assessment(ratio, low, high, "inconclusive", reason, needed)
    found = verdict(low, high, tolerance)
    needed = runs_to_decide(baseline, candidate, tolerance) if found == "inconclusive" else None
    return Assessment(ratio, low, high, found, "", needed)
