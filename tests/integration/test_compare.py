"""Comparisons, regression gating and repeats end to end: real runs, the real MLflow store,
the real command line. Verdicts are asserted only where the effect is far beyond any timing
noise (a workload 20 times slower); the statistics are tested in tests/unit."""

import csv
import re
import shutil

import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO, TINY, run_command


@pytest.fixture
def analyze(results_dir):
    return lambda *args: run_command(results_dir, "analyze", *args)


def _rows(results_dir):
    [table] = sorted((results_dir / "tables").glob("*.csv"))[-1:]
    return list(csv.DictReader(table.open()))


SLOW = "backend.extra_env.VGPU_BENCH_DUMMY_FAULT=sleep:0.02"  # 20 x the tiny dummy's 1 ms step


def test_a_comparison_writes_its_tables_and_an_mlflow_run(cli, analyze, results_dir):
    done = cli("--multirun", "model=dummy", "backend=cpu", "label=one,two", *TINY)
    assert done.returncode == 0, done.stderr
    done = analyze("compare", "baseline=label=one", "candidate=label=two")
    assert done.returncode == 0, done.stderr
    [row] = _rows(results_dir)  # whatever the timing noise said: verdicts are tested on synthetic data
    assert row["verdict"] in ("equivalent", "inconclusive", "slower", "faster") and row["model"] == "dummy"
    assert {p.suffix for p in (results_dir / "tables").iterdir()} == {".md", ".csv", ".html"}
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    [comparison] = client.search_runs(
        [client.get_experiment_by_name("vgpu-bench").experiment_id], filter_string="tags.kind = 'comparison'"
    )
    assert comparison.data.metrics["pairs"] == 1
    assert {a.path.rsplit(".", 1)[1] for a in client.list_artifacts(comparison.info.run_id)} == {"md", "csv", "html"}
    # One run a side, no measured run-to-run variation: no verdict, and the table says why.
    assert row["baseline_run_cv"] == "" and row["verdict"] == "inconclusive"
    assert "run-to-run noise unknown" in done.stdout
    assert row["ci_low"] == row["ci_high"] == "" and "(no interval)" in done.stdout  # none holds: none shown


def test_results_read_back_from_the_store_leave_nothing_in_the_temporary_folder(cli, results_dir, short_tmpdir):
    # Runs of another machine have no folder here: their result files come from MLflow.
    assert cli("--multirun", "model=dummy", "backend=cpu", "label=one,two", *TINY).returncode == 0
    shutil.rmtree(results_dir / "runs")
    args = ("compare", "baseline=label=one", "candidate=label=two")
    done = run_command(results_dir, "analyze", *args, env={"TMPDIR": str(short_tmpdir)})
    assert done.returncode == 0 and "run-to-run noise unknown" in done.stdout, done.stderr  # it read the step times
    assert list(short_tmpdir.iterdir()) == []


def test_single_runs_use_the_run_to_run_variation_measured_with_repeats(cli, analyze, results_dir):
    assert cli("--multirun", "model=dummy", "backend=cpu", "label=one,two", *TINY).returncode == 0
    assert cli("model=dummy", "backend=cpu", "label=calibration", "repeats=3", *TINY).returncode == 0
    done = analyze("compare", "baseline=label=one", "candidate=label=two")
    assert done.returncode == 0, done.stderr
    [row] = _rows(results_dir)
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    [group] = [
        r
        for r in client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id])
        if "throughput_cv" in r.data.metrics
    ]
    assert float(row["baseline_run_cv"]) == pytest.approx(group.data.metrics["throughput_cv"])
    assert row["baseline_run_cv_runs"] == row["candidate_run_cv_runs"] == "3"
    assert "run-to-run noise unknown" not in done.stdout  # one run a side, one after the other: still no verdict
    assert row["reason"].startswith("sides not interleaved in time")


def test_runs_one_after_the_other_give_no_verdict_and_never_fail_the_gate(cli, analyze, results_dir):
    # 20 times slower, yet one run a side, one after the other: drift and difference are one
    assert cli("model=dummy", "backend=cpu", "label=release 2.3", *TINY).returncode == 0
    assert cli("model=dummy", "backend=cpu", "label=release 2.4", *TINY, SLOW).returncode == 0
    done = analyze("compare", "baseline=label='release 2.3'", "candidate=label='release 2.4'")
    [row] = _rows(results_dir)
    assert done.returncode == 0 and row["verdict"] == "inconclusive", done.stdout + done.stderr
    assert row["reason"].startswith("run-to-run noise unknown, repeats>=")
    assert analyze("pin-baseline", "baseline=label='release 2.3'").returncode == 0
    gate = analyze("regressions")  # later runs vs the pinned baseline: no verdict, no failure
    assert gate.returncode == 0 and "REGRESSION" not in gate.stderr, gate.stdout + gate.stderr


def test_make_ab_alternates_the_sides_and_fails_the_gate_on_a_slower_candidate(results_dir, analyze):
    # Three a side: with two, one run of the baseline slowed by a busy machine (1,145 vs 1,815
    # samples/s) widened the interval of a 10x slower candidate to [0.004, 1.245].
    done = run_command(results_dir, "ab", "model=dummy", "backend=cpu", *TINY, f"candidate={SLOW}", "repeats=3")
    assert done.returncode == 1 and "REGRESSION: dummy/infer/fp32/bs2/tiny" in done.stderr, done.stdout + done.stderr
    [row] = _rows(results_dir)
    assert row["verdict"] == "slower" and (row["baseline_runs"], row["candidate_runs"]) == ("3", "3")
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id])
    roles = [r.data.tags["group_role"] for r in sorted(runs, key=lambda r: r.info.start_time)]
    assert roles == ["baseline", "candidate"] * 3  # alternated, as recorded
    # the same runs read back from the store: interleaved in time there too
    [group] = {r.data.tags["group_id"] for r in runs}
    again = analyze(
        "compare",
        f"baseline=group_id={group} group_role=baseline",
        f"candidate=group_id={group} group_role=candidate",
    )
    assert again.returncode == 0 and _rows(results_dir)[0]["verdict"] == "slower", again.stdout + again.stderr


def test_make_ab_refuses_one_run_a_side(results_dir):
    done = run_command(results_dir, "ab", "model=dummy", "candidate=backend=cpu", "repeats=1")
    assert done.returncode == 2 and "repeats>=2" in done.stderr and "Traceback" not in done.stderr


def test_pairs_missing_on_one_side_are_listed(cli, analyze, results_dir):
    assert cli("model=dummy", "backend=cpu", "label=a", *TINY).returncode == 0
    assert cli("model=dummy", "workload=train", "backend=cpu", "label=b", *TINY).returncode == 0
    done = analyze("compare", "baseline=label=a", "candidate=label=b")
    # each with the settings that kept it apart
    assert re.search(r"not paired: dummy/infer/fp32/2/tiny \[.*sync=step.*\]: only in baseline", done.stdout)
    assert re.search(r"not paired: dummy/train/fp32/2/tiny \[.*sync=window.*\]: only in candidate", done.stdout)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["compare", "baseline=backend", "candidate=backend=cpu"], "a side is key=value filters"),
        (["compare", "baseline=colour=blue", "candidate=backend=cpu"], "unknown side key 'colour'"),
        (["compare", "baseline=label='unclosed", "candidate=backend=cpu"], "a side is key=value filters"),
        (["compare", "baseline=backend=cpu"], "compare needs a candidate"),
        (["regressions"], "no baseline"),
        (["compare", "baseline=backend=cpu", "candidate=backend=cpu", "tolerance=2"], "tolerance"),
        (["compare", "baseline=backend=cpu", "candidate=backend=cpu", "tolernce=0.1"], "Did you mean 'tolerance'"),
        (["contrast", "baseline=backend=cpu"], "one of compare, regressions, pin-baseline, report"),
    ],
)
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
    assert {c.data.tags["group_id"] for c in children} == {parent.data.tags["group"]}
    assert {c.data.tags["group_kind"] for c in children} == {"repeats"}


def test_version_1_results_ingest_and_compare(results_dir, analyze, tmp_path):
    """Result files of schema 1 (made before the typed contracts) load, log and pair."""
    import shutil

    old = tmp_path / "v1"  # ingest notes what it logged beside each file: a copy, not the repository's
    shutil.copytree(REPO / "tests" / "data" / "v1", old)
    done = run_command(results_dir, "sync", f"dir={old}")
    assert done.returncode == 0 and "4 logged" in done.stdout, done.stdout + done.stderr
    done = analyze("compare", "baseline=label=v1-0", "candidate=label=v1-1")
    assert done.returncode == 0, done.stderr
    [row] = _rows(results_dir)
    assert row["baseline_runs"] == row["candidate_runs"] == "2" and row["model"] == "dummy"


def test_reading_the_store_pages_through_every_run(results_dir, monkeypatch):
    from runners.config import TrackingConfig
    from runners.tracking import read
    from runners.tracking.write import client_for

    client, experiment = client_for(TrackingConfig(), results_dir)
    for n in range(7):
        run = client.create_run(experiment, tags={"run_id": f"r{n}", "status": "success", "task": "workload"})
        client.set_terminated(run.info.run_id)
    monkeypatch.setattr(read, "PAGE_SIZE", 2)  # 7 runs: four pages
    store = read.Store(TrackingConfig(), results_dir)
    assert sorted(r.tags["run_id"] for r in store.runs({})) == [f"r{n}" for n in range(7)]


def test_make_ab_dry_run_prints_both_sides_plans_and_starts_nothing(results_dir):
    done = run_command(results_dir, "ab", "model=dummy", "candidate=label=x", "repeats=2", "dry_run=true")
    assert done.returncode == 0 and done.stdout.startswith("2 x (baseline, candidate):"), done.stderr
    assert done.stdout.count("dry run: dummy-infer") == 2 and not (results_dir / "runs").exists()
