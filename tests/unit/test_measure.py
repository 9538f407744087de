import pytest

from runners import stats
from runners.worker import measure


def _count():
    calls = []
    return calls, lambda: calls.append(1)


def test_both_minimums_must_be_met():
    calls, step = _count()
    m = measure.run(step, lambda: None, warmup_steps=2, min_steps=5, min_duration_s=0.05, max_duration_s=10)
    assert len(m.step_times_ms) >= 5 and m.duration_s >= 0.05 and m.reached_minimums
    assert len(calls) == len(m.step_times_ms) + 2  # warm-up steps are not measured
    assert m.first_step_done_at > 0


def test_maximum_duration_cuts_the_run_short_and_says_so():
    import time

    m = measure.run(
        lambda: time.sleep(0.02), lambda: None, warmup_steps=0, min_steps=10_000, min_duration_s=0, max_duration_s=0.1
    )
    assert not m.reached_minimums and len(m.step_times_ms) < 10_000


def test_device_timer_records_around_each_step_and_reads_only_after_its_synchronize():
    calls = []

    class Timer:
        def start(self):
            calls.append("start")

        def stop(self):
            calls.append("stop")

        def lap(self):
            calls.append("lap")

        def times_ms(self):
            return [1.0] * calls.count("lap")

    m = measure.run(
        lambda: calls.append("step"),
        lambda: calls.append("sync"),
        warmup_steps=1,
        min_steps=3,
        min_duration_s=0,
        max_duration_s=5,
        timer=Timer(),
    )
    measured = calls[2:]  # after the warm-up's step and sync
    assert calls[:2] == ["step", "sync"]
    # A reading never comes before the synchronize that waited for its events: no sync of its own.
    assert measured == ["start", "step", "stop", "sync", "lap"] * len(m.step_times_ms)
    assert len(m.device_times_ms) == len(m.step_times_ms) == 3


def test_percentiles_match_numpys_linear_method():
    values = [float(v) for v in range(1, 101)]
    summary = stats.summarize_ms(values)
    assert summary["p50"] == 50.5 and round(summary["p90"], 6) == 90.1 and round(summary["p99"], 6) == 99.01
    assert stats.summarize_ms([5.0])["p99"] == 5.0 and stats.summarize_ms([5.0])["stdev"] == 0.0


class FakeClock:
    """A clock that moves only when the synthetic step and synchronize say so."""

    def __init__(self, step_ms: float, sync_ms: float):
        self.now, self.step_ms, self.sync_ms = 1000.0, step_ms, sync_ms

    def __call__(self) -> float:
        return self.now

    def step(self) -> None:
        self.now += self.step_ms / 1e3

    def synchronize(self) -> None:
        self.now += self.sync_ms / 1e3


def _throughput(m, batch=1):
    return batch * len(m.step_times_ms) / (sum(m.step_times_ms) / 1e3)


def test_window_and_step_modes_agree_on_throughput_and_window_pays_one_sync_per_window(monkeypatch):
    for sync_ms in (0.0, 0.5):  # 0: nothing to pay per synchronize, and both modes measure the same
        runs = {}
        for every in (1, 10):
            clock = FakeClock(step_ms=2.0, sync_ms=sync_ms)
            monkeypatch.setattr(measure.time, "perf_counter", clock)
            runs[every] = measure.run(
                clock.step, clock.synchronize, warmup_steps=1, min_steps=40, min_duration_s=0, max_duration_s=60,
                sync_every=every,
            )  # fmt: skip
        step, window = runs[1], runs[10]
        assert step.steps == len(step.step_times_ms) == 40 and window.steps == 40 and len(window.step_times_ms) == 4
        assert window.steps_per_time == 10
        assert _throughput(step) == pytest.approx(1e3 / (2.0 + sync_ms))  # a synchronize per step
        assert _throughput(window) == pytest.approx(1e3 / (2.0 + sync_ms / 10))  # one per window


def test_a_window_counts_its_steps_towards_the_minimum():
    calls, step = _count()
    m = measure.run(step, lambda: None, warmup_steps=0, min_steps=25, min_duration_s=0, max_duration_s=5, sync_every=10)
    assert m.steps == 30 and len(calls) == 30 and len(m.step_times_ms) == 3


def test_startup_phases_chain_from_the_spawn_and_sum_to_the_first_step():
    from runners.worker.startup import Startup

    phases = Startup(spawned_at=100.0)
    for phase, at in (("import", 101.5), ("device_init", 101.75), ("build", 103.0), ("to_device", 103.25)):
        phases.mark(phase, at=at)
    phases.mark("first_step", at=104.0)
    assert list(phases.seconds) == ["import", "device_init", "build", "to_device", "first_step"]
    assert phases.seconds["import"] == 1.5 and sum(phases.seconds.values()) == pytest.approx(4.0)
