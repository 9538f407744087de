"""The timing loop: warm-up, then measured steps until both the minimum step count and
the minimum duration are met (or the maximum duration passes). Each timed unit ends with
a synchronize, so its wall-clock time covers the device work it launched: one step
(`workload.sync=step`, per-step latency) or a window of `sync_every` steps
(`sync=window`: the host queues steps ahead as a training loop does; one time per window,
recorded as its mean step time)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol


class StepTimer(Protocol):
    """Device-side timing (CUDA events) around each timed unit: `start` and `stop` record,
    `lap` reads the unit's time after its synchronize (which already waited for the events,
    so reading adds no sync), `times_ms` returns them all."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def lap(self) -> None: ...
    def times_ms(self) -> list[float]: ...


@dataclass
class Measurement:
    step_times_ms: list[float] = field(default_factory=list)
    device_times_ms: Optional[list[float]] = None
    warmup_steps: int = 0
    duration_s: float = 0.0
    first_step_done_at: float = 0.0  # time.time() when the first step (warm-up included) finished
    reached_minimums: bool = True  # False: max_duration_s cut the run short (before target_ci too)
    ci_rel: float = math.inf  # half-width of the 95% CI of the mean step time, relative to the mean
    window: tuple[float, float] = (0.0, 0.0)  # time.time() at the start and end of the measured steps
    steps_per_time: int = 1  # steps behind each entry of step_times_ms (sync=window: sync_every)

    @property
    def steps(self) -> int:
        return len(self.step_times_ms) * self.steps_per_time


def run(
    step: Callable[[], object],
    synchronize: Callable[[], None],
    *,
    warmup_steps: int,
    min_steps: int,
    min_duration_s: float,
    max_duration_s: float,
    timer: Optional[StepTimer] = None,
    progress: Callable[[str], None] = lambda line: None,
    before_measuring: Callable[[], None] = lambda: None,
    target_ci: Optional[float] = None,
    sync_every: int = 1,
) -> Measurement:
    m = Measurement(warmup_steps=warmup_steps, steps_per_time=sync_every)
    for i in range(warmup_steps):
        step()
        synchronize()
        if i == 0:
            m.first_step_done_at = time.time()
        progress(f"warm-up {i + 1}/{warmup_steps}")

    before_measuring()  # e.g. wait for the other tenants, so measured windows overlap
    perf_counter = time.perf_counter
    times = m.step_times_ms
    window_start = time.time()
    began = perf_counter()
    elapsed = 0.0
    total = total_sq = 0.0  # running sums: the CI check costs O(1) per step
    while True:
        if timer:
            timer.start()
        t0 = perf_counter()
        for _ in range(sync_every):
            step()
        if timer:
            timer.stop()
        synchronize()
        t1 = perf_counter()
        if timer:
            timer.lap()
        step_ms = (t1 - t0) * 1e3 / sync_every
        times.append(step_ms)
        total += step_ms
        total_sq += step_ms * step_ms
        if not m.first_step_done_at:
            m.first_step_done_at = time.time()
        elapsed = t1 - began
        if len(times) * sync_every >= min_steps and elapsed >= min_duration_s:
            m.ci_rel = _ci_rel(len(times), total, total_sq)
            if target_ci is None or m.ci_rel <= target_ci:
                break
        if elapsed >= max_duration_s:
            m.reached_minimums = False
            break
        if len(times) % 10 == 0:
            progress(f"step {len(times) * sync_every} ({elapsed:.1f}s)")
    m.ci_rel = _ci_rel(len(times), total, total_sq)
    m.duration_s = elapsed
    m.window = (window_start, time.time())
    if timer:
        m.device_times_ms = [t / sync_every for t in timer.times_ms()]
    progress(f"measured {m.steps} steps in {elapsed:.1f}s")
    return m


def _ci_rel(n: int, total: float, total_sq: float) -> float:
    """1.96 x standard error of the mean, over the mean (normal approximation)."""
    if n < 2 or total <= 0:
        return math.inf
    mean = total / n
    variance = max(0.0, (total_sq - n * mean * mean) / (n - 1))
    return 1.96 * math.sqrt(variance / n) / mean
