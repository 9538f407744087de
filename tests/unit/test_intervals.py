"""The comparison's 95% interval covers the true ratio about 95% of the time, whatever the
run-to-run noise and however few runs, and a real slowdown is called. Seeded simulations
of log-normal run throughputs; the table in docs/comparing.md comes from `coverage` here."""

import math

import numpy as np
import pytest

from runners.analysis.compare import verdict
from runners.analysis.intervals import ratio_interval, runs_to_decide, side, step_noise
from runners.stats import RunNoise

CVS = (0.01, 0.05, 0.10, 0.15)
RUNS = (1, 2, 3, 5, 10)
CALIBRATION_RUNS = 5  # a side of one run needs the CV measured once with repeats=5


def _draw(rng, n: int, cv: float, scale: float = 1.0) -> list[float]:
    sd = math.sqrt(math.log1p(cv * cv))
    return list(scale * np.exp(rng.normal(-sd * sd / 2, sd, n)))


def _estimate(rng, n: int, cv: float, scale: float):
    values = _draw(rng, n, cv, scale)
    if n > 1:
        return side(values)
    calibration = _draw(rng, CALIBRATION_RUNS, cv)
    measured = RunNoise(float(np.std(calibration, ddof=1) / np.mean(calibration)), CALIBRATION_RUNS, "calibration")
    return side(values, noise=measured)


def coverage(cv: float, runs: int, true_ratio: float = 1.0, trials: int = 400, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    covered = 0
    for _ in range(trials):
        _, low, high = ratio_interval(_estimate(rng, runs, cv, 100.0), _estimate(rng, runs, cv, 100.0 * true_ratio))
        covered += low <= true_ratio <= high
    return covered / trials


@pytest.mark.parametrize("cv", CVS)
@pytest.mark.parametrize("runs", RUNS)
def test_the_95_percent_interval_covers_the_true_ratio(cv, runs):
    assert coverage(cv, runs) >= 0.93
    assert coverage(cv, runs, true_ratio=0.9, seed=1) >= 0.93


def _verdicts(cv: float, runs: int, true_ratio: float, trials: int = 400, tolerance: float = 0.02) -> dict[str, float]:
    rng = np.random.default_rng(7)
    counts: dict[str, int] = {}
    for _ in range(trials):
        _, low, high = ratio_interval(_estimate(rng, runs, cv, 100.0), _estimate(rng, runs, cv, 100.0 * true_ratio))
        found = verdict(low, high, tolerance)
        counts[found] = counts.get(found, 0) + 1
    return {k: v / trials for k, v in counts.items()}


def test_a_real_ten_percent_slowdown_is_called_slower():
    # 5 runs a side at 5% CV: the power stated in docs/comparing.md
    assert _verdicts(0.05, 5, 0.9).get("slower", 0) > 0.5


def test_repeats_of_one_configuration_are_rarely_called_different():
    for cv in CVS:
        called = _verdicts(cv, 3, 1.0)
        assert called.get("slower", 0) + called.get("faster", 0) <= 0.05, (cv, called)


def test_two_runs_give_a_wider_interval_than_five():
    rng = np.random.default_rng(3)
    two = [ratio_interval(side(_draw(rng, 2, 0.05)), side(_draw(rng, 2, 0.05))) for _ in range(200)]
    five = [ratio_interval(side(_draw(rng, 5, 0.05)), side(_draw(rng, 5, 0.05))) for _ in range(200)]
    width = lambda found: np.median([high / low for _, low, high in found])  # noqa: E731
    assert width(two) > 1.5 * width(five)


def test_a_measured_cv_is_pooled_with_few_runs_and_narrows_their_interval():
    values = [100.0, 104.0]
    alone, pooled = side(values), side(values, noise=RunNoise(0.03, 10, "other"))
    assert pooled.dof == 1 + 9 and alone.dof == 1 and pooled.noise == "runs+measured"


def test_one_run_without_a_measured_cv_has_only_its_steps_noise_and_says_so():
    steps = [10.0, 11.0, 9.5, 10.0, 10.5, 9.5, 10.0, 10.2, 9.0]
    estimate = side([100.0], [steps])
    assert estimate.noise == "steps only" and 0 < estimate.variance < 0.01
    assert runs_to_decide(estimate, estimate, 0.02) is None


def test_block_means_see_the_noise_of_correlated_steps():
    # a slow drift: consecutive steps alike, so treating them as independent understates the noise
    rng = np.random.default_rng(0)
    drift = np.cumsum(rng.normal(0, 0.2, 400)) + 100
    blocks, _ = step_noise(list(drift))
    independent = np.var(drift, ddof=1) / len(drift) / np.mean(drift) ** 2
    assert blocks > 5 * independent


def test_runs_to_decide_grows_with_the_noise():
    quiet = side(_draw(np.random.default_rng(1), 3, 0.02))
    noisy = side(_draw(np.random.default_rng(1), 3, 0.10))
    assert runs_to_decide(noisy, noisy, 0.02) > runs_to_decide(quiet, quiet, 0.02) >= 2
