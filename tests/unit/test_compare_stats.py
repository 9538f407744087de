"""The comparison's statistics and verdicts, on synthetic step times (no run, no timing noise)."""

import pytest

from runners.analysis.compare import throughput_ratio_ci, verdict
from runners.worker import measure


def test_identical_step_times_give_ratio_one_and_a_tight_interval():
    steps = [10.0, 10.2, 9.9, 10.1] * 10
    ratio, low, high = throughput_ratio_ci([(8, steps)], [(8, steps)])
    assert ratio == pytest.approx(1.0) and 0.98 < low <= 1.0 <= high < 1.02
    assert verdict(low, high, 0.02) == "equivalent"


def test_twice_the_step_time_is_half_the_throughput():
    ratio, low, high = throughput_ratio_ci([(8, [10.0, 10.5] * 20)], [(8, [20.0, 21.0] * 20)])
    assert ratio == pytest.approx(0.5) and high < 0.98
    assert verdict(low, high, 0.02) == "slower"


def test_run_to_run_variation_widens_the_interval():
    steady = [10.0, 10.1] * 20
    one_run = throughput_ratio_ci([(8, steady)], [(8, steady)])
    repeats = throughput_ratio_ci([(8, steady), (8, [11.0, 11.1] * 20)], [(8, steady), (8, [9.0, 9.1] * 20)])
    assert (repeats[2] - repeats[1]) > 3 * (one_run[2] - one_run[1])


def test_measured_run_to_run_noise_widens_the_interval_of_single_runs():
    steady = [10.0, 10.1] * 20
    noise = (0.10, 5)  # a 10% CV, measured over 5 repeated runs
    alone = throughput_ratio_ci([(8, steady)], [(8, steady)])
    noisy = throughput_ratio_ci([(8, steady)], [(8, steady)], baseline_noise=noise, candidate_noise=noise)
    assert verdict(*alone[1:], 0.02) == "equivalent" and verdict(*noisy[1:], 0.02) == "inconclusive"
    assert noisy[1] < 0.8 and noisy[2] > 1.25  # about exp(+-2.78 x sqrt(2) x 0.10)
    halved = throughput_ratio_ci([(8, steady)], [(8, [20.0, 20.2] * 20)], baseline_noise=noise, candidate_noise=noise)
    assert verdict(*halved[1:], 0.02) == "slower"  # a large effect still stands out of the noise
    # Repeated runs show their own variation: a measured CV is not added on top of it.
    repeats = [(8, steady), (8, [11.0, 11.1] * 20)]
    assert throughput_ratio_ci(repeats, repeats, baseline_noise=noise, candidate_noise=noise) == throughput_ratio_ci(
        repeats, repeats
    )


def test_a_cv_measured_over_fewer_runs_widens_the_interval_more():
    steady = [10.0, 10.1] * 20
    widths = [
        throughput_ratio_ci([(8, steady)], [(8, steady)], baseline_noise=(0.05, n), candidate_noise=(0.05, n))
        for n in (3, 10, 50)
    ]
    assert [w[2] - w[1] for w in widths] == sorted((w[2] - w[1] for w in widths), reverse=True)


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
