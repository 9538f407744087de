"""Comparisons, regression gating, repeats and adaptive measurement, on the CPU."""
import csv
import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO, TINY
from runners.worker import measure
from runners.analysis.compare import throughput_ratio_ci, verdict


@pytest.fixture
def analyze(results_dir):
    def run(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "VGPU_BENCH_RESULTS": str(results_dir)}
        env.pop("MLFLOW_TRACKING_URI", None)
        return subprocess.run([sys.executable, "-m", "runners.cli.analyze", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    return run


def _rows(results_dir):
    [table] = sorted((results_dir / "tables").glob("*.csv"))[-1:]
    return list(csv.DictReader(table.open()))


# -- statistics ----------------------------------------------------------------------------

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
    assert throughput_ratio_ci(repeats, repeats, baseline_noise=noise, candidate_noise=noise) == \
        throughput_ratio_ci(repeats, repeats)


def test_a_cv_measured_over_fewer_runs_widens_the_interval_more():
    steady = [10.0, 10.1] * 20
    widths = [throughput_ratio_ci([(8, steady)], [(8, steady)], baseline_noise=(0.05, n), candidate_noise=(0.05, n))
              for n in (3, 10, 50)]
    assert [w[2] - w[1] for w in widths] == sorted((w[2] - w[1] for w in widths), reverse=True)


@pytest.mark.parametrize("low, high, expected", [(0.90, 0.95, "slower"), (1.05, 1.10, "faster"),
                                                 (0.99, 1.01, "equivalent"), (0.95, 1.01, "inconclusive"),
                                                 (0.90, 1.10, "inconclusive")])
def test_verdicts(low, high, expected):
    assert verdict(low, high, 0.02) == expected


def test_adaptive_mode_measures_until_the_interval_is_narrow():
    import itertools
    import time

    durations = itertools.cycle([0.001, 0.003])  # a 50% spread step to step
    m = measure.run(lambda: time.sleep(next(durations)), lambda: None, warmup_steps=0, min_steps=2,
                    min_duration_s=0, max_duration_s=20, target_ci=0.05)
    assert m.ci_rel <= 0.05 and len(m.step_times_ms) > 10 and m.reached_minimums
    capped = measure.run(lambda: time.sleep(next(durations)), lambda: None, warmup_steps=0, min_steps=2,
                         min_duration_s=0, max_duration_s=0.05, target_ci=0.0001)
    assert not capped.reached_minimums and capped.ci_rel > 0.0001


# -- end to end ----------------------------------------------------------------------------

def test_two_runs_of_the_same_configuration_are_equivalent(cli, analyze, results_dir):
    for label in ("one", "two"):
        done = cli("model=dummy", "backend=cpu", f"label={label}", *TINY, "workload.min_duration_s=1")
        assert done.returncode == 0, done.stderr
    done = analyze("compare", "--baseline", "label=one", "--candidate", "label=two")
    assert done.returncode == 0, done.stderr
    [row] = _rows(results_dir)
    assert row["verdict"] == "equivalent", row
    assert {p.suffix for p in (results_dir / "tables").iterdir()} == {".md", ".csv", ".html"}
    assert "equivalent" in done.stdout
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    [comparison] = client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id],
                                      filter_string="tags.kind = 'comparison'")
    assert comparison.data.metrics["equivalent"] == 1
    assert {a.path.rsplit(".", 1)[1] for a in client.list_artifacts(comparison.info.run_id)} == {"md", "csv", "html"}
    # One run a side, no measured run-to-run variation: the table says the interval is too narrow.
    assert row["baseline_run_cv"] == "" and "run-to-run variation unknown" in done.stdout


def test_single_runs_use_the_run_to_run_variation_measured_with_repeats(cli, analyze, results_dir):
    for label in ("one", "two"):
        assert cli("model=dummy", "backend=cpu", f"label={label}", *TINY).returncode == 0
    assert cli("model=dummy", "backend=cpu", "label=calibration", "repeats=3", *TINY).returncode == 0
    done = analyze("compare", "--baseline", "label=one", "--candidate", "label=two")
    assert done.returncode == 0, done.stderr
    [row] = _rows(results_dir)
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    [group] = [r for r in client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id])
               if "throughput_cv" in r.data.metrics]
    assert float(row["baseline_run_cv"]) == pytest.approx(group.data.metrics["throughput_cv"])
    assert row["baseline_run_cv_runs"] == row["candidate_run_cv_runs"] == "3"
    assert "run-to-run variation unknown" not in done.stdout


@pytest.mark.slow
def test_one_thread_against_two_is_slower_and_gates_a_release(cli, analyze, results_dir):
    # Enough parallel work per step for threads to pay, and windows long enough that a
    # brief burst of other activity on a 2-core machine cannot decide the verdict.
    shape = ["model=resnet50", "model.size=tiny", "workload.batch_size=32", "workload.image_size=64",
             "workload.warmup_steps=3", "workload.min_steps=5", "workload.min_duration_s=5"]
    assert cli(*shape, "backend=cpu", "backend.threads=2", "label=two-threads").returncode == 0
    assert cli(*shape, "backend=cpu", "backend.threads=1", "label=one-thread").returncode == 0
    done = analyze("compare", "--baseline", "label=two-threads", "--candidate", "label=one-thread")
    assert done.returncode == 0 and _rows(results_dir)[0]["verdict"] == "slower", done.stdout
    gate = analyze("regressions", "--baseline", "label=two-threads")  # later runs vs the baseline
    assert gate.returncode == 1
    assert "REGRESSION: resnet50/infer/fp32/bs32/tiny" in gate.stderr
    # pinned: the same gate without naming the baseline again
    assert analyze("pin-baseline", "--baseline", "label=two-threads").returncode == 0
    assert analyze("regressions").returncode == 1


def test_pairs_missing_on_one_side_are_listed(cli, analyze, results_dir):
    assert cli("model=dummy", "backend=cpu", "label=a", *TINY).returncode == 0
    assert cli("model=dummy", "workload=train", "backend=cpu", "label=b", *TINY).returncode == 0
    done = analyze("compare", "--baseline", "label=a", "--candidate", "label=b")
    assert "dummy/infer/fp32/2/tiny: only in baseline" in done.stdout
    assert "dummy/train/fp32/2/tiny: only in candidate" in done.stdout


@pytest.mark.parametrize("args, expected", [
    (["compare", "--baseline", "backend", "--candidate", "backend=cpu"], "a side is key=value pairs"),
    (["compare", "--baseline", "colour=blue", "--candidate", "backend=cpu"], "unknown side key 'colour'"),
    (["compare", "--baseline", "backend=cpu"], "compare needs a candidate"),
    (["regressions"], "no baseline"),
    (["compare", "--baseline", "backend=cpu", "--candidate", "backend=cpu", "--tolerance", "2"], "tolerance"),
])
def test_bad_comparison_input_is_one_line_and_exit_2(analyze, args, expected):
    done = analyze(*args)
    assert done.returncode == 2 and expected in done.stderr and done.stderr.count("\n") == 1


def test_repeats_report_run_to_run_variation(cli, results_dir):
    done = cli("model=dummy", "backend=cpu", "repeats=3", *TINY)
    assert done.returncode == 0, done.stderr
    assert "run-to-run variation (CV)" in done.stderr
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id])
    [parent] = [r for r in runs if "throughput_cv" in r.data.metrics]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.data.metrics["repeats"] == 3 and len(children) == 3
    assert {c.data.tags["repeat_group"] for c in children} == {parent.data.tags["repeat_group"]}
