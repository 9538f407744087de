"""The timing loop: warm-up, then measured steps until both the minimum step count and
the minimum duration are met (or the maximum duration passes). Every step is
synchronized, so each wall-clock time covers the device work it launched."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol


class StepTimer(Protocol):
    """Device-side timing (CUDA events) recorded around each measured step."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def times_ms(self) -> list[float]: ...


@dataclass
class Measurement:
    step_times_ms: list[float] = field(default_factory=list)
    device_times_ms: Optional[list[float]] = None
    warmup_steps: int = 0
    duration_s: float = 0.0
    first_step_done_at: float = 0.0  # time.time() when the first step (warm-up included) finished
    reached_minimums: bool = True  # False: max_duration_s cut the run short
    window: tuple[float, float] = (0.0, 0.0)  # time.time() at the start and end of the measured steps


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
) -> Measurement:
    m = Measurement(warmup_steps=warmup_steps)
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
    while True:
        if timer:
            timer.start()
        t0 = perf_counter()
        step()
        if timer:
            timer.stop()
        synchronize()
        t1 = perf_counter()
        times.append((t1 - t0) * 1e3)
        if not m.first_step_done_at:
            m.first_step_done_at = time.time()
        elapsed = t1 - began
        if len(times) >= min_steps and elapsed >= min_duration_s:
            break
        if elapsed >= max_duration_s:
            m.reached_minimums = False
            break
        if len(times) % 10 == 0:
            progress(f"step {len(times)} ({elapsed:.1f}s)")
    m.duration_s = elapsed
    m.window = (window_start, time.time())
    if timer:
        m.device_times_ms = timer.times_ms()
    progress(f"measured {len(times)} steps in {elapsed:.1f}s")
    return m
