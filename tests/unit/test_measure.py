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


def test_device_timer_is_read_once_after_the_loop():
    class Timer:
        def __init__(self):
            self.started = self.stopped = 0

        def start(self):
            self.started += 1

        def stop(self):
            self.stopped += 1

        def times_ms(self):
            return [1.0] * self.stopped

    timer = Timer()
    m = measure.run(
        lambda: None, lambda: None, warmup_steps=1, min_steps=3, min_duration_s=0, max_duration_s=5, timer=timer
    )
    assert timer.started == timer.stopped == len(m.step_times_ms) == len(m.device_times_ms)


def test_percentiles_match_numpys_linear_method():
    values = [float(v) for v in range(1, 101)]
    summary = stats.summarize_ms(values)
    assert summary["p50"] == 50.5 and round(summary["p90"], 6) == 90.1 and round(summary["p99"], 6) == 99.01
    assert stats.summarize_ms([5.0])["p99"] == 5.0 and stats.summarize_ms([5.0])["stdev"] == 0.0
