"""Summary statistics of per-step times (standard library only)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else math.nan,
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
    }


@dataclass(frozen=True)
class RunNoise:
    """Run-to-run variation measured with repeats=N: the CV of throughput over `runs` runs of
    one configuration (the repeats group `group_id`)."""

    cv: float
    runs: int
    group_id: str = ""
