"""The arrival schedule, generated in advance from a seed: request send times in seconds
from the start. Poisson (exponential gaps, as MLPerf LoadGen's Server scenario), or gamma
gaps of shape `burstiness` and the same mean (vLLM's --burstiness: 1 is Poisson, below 1
burstier, above 1 more regular). Each tenant draws its own stream of the same seed."""

from __future__ import annotations

import random


def arrivals(
    rate: float, duration_s: float, seed: int, burstiness: float = 1.0, stream: int = 0, min_count: int = 0
) -> list[float]:
    """Arrival times at `rate` requests/s on average, over [0, duration_s) and on until there
    are min_count of them (as LoadGen runs until both its minimum duration and query count)."""
    rng = random.Random(f"serve:{seed}:{stream}")  # a str seed is hashed the same on every run
    scale = 1.0 / (rate * burstiness)
    times, t = [], 0.0
    while True:
        t += rng.expovariate(rate) if burstiness == 1.0 else rng.gammavariate(burstiness, scale)
        if t >= duration_s and len(times) >= min_count:
            return times
        times.append(t)


def share(times: list[float], generators: int, index: int) -> list[tuple[int, float]]:
    """The (request id, arrival) pairs generator `index` of `generators` sends: every
    generators-th arrival, so each share keeps the schedule's shape and together they are it."""
    return [(i, t) for i, t in enumerate(times) if i % generators == index]
