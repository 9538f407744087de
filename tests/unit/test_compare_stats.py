"""The comparison's statistics and verdicts, on synthetic step times (no run, no timing noise)."""

import pytest

from runners.analysis.compare import verdict
from runners.worker import measure


@pytest.mark.parametrize(
    "low, high, expected",
    [
        (0.90, 0.95, "slower"),
        (1.05, 1.10, "faster"),
        (0.99, 1.01, "equivalent"),
        (0.95, 1.01, "inconclusive"),
        (0.90, 1.10, "inconclusive"),
    ],
)
def test_verdicts(low, high, expected):
    assert verdict(low, high, 0.02) == expected


def test_adaptive_mode_measures_until_the_interval_is_narrow():
    import itertools
    import time

    durations = itertools.cycle([0.001, 0.003])  # a 50% spread step to step
    m = measure.run(
        lambda: time.sleep(next(durations)),
        lambda: None,
        warmup_steps=0,
        min_steps=2,
        min_duration_s=0,
        max_duration_s=20,
        target_ci=0.05,
    )
    assert m.ci_rel <= 0.05 and len(m.step_times_ms) > 10 and m.reached_minimums
    capped = measure.run(
        lambda: time.sleep(next(durations)),
        lambda: None,
        warmup_steps=0,
        min_steps=2,
        min_duration_s=0,
        max_duration_s=0.05,
        target_ci=0.0001,
    )
    assert not capped.reached_minimums and capped.ci_rel > 0.0001
