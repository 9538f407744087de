"""MLflow logging into a temporary sqlite store, through the real command line."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO, TINY, results_of, run_dirs

# A training run synchronizes once per window (workload.sync=window): a mean step time, no percentiles.
METRICS = {
    "throughput",
    "latency_ms_mean",
    "memory_peak_mb",
    "time_to_first_step_s",
    "startup_import_s",
    "startup_build_s",
    "startup_first_step_s",
}
TAGS = {"model", "workload", "backend", "framework", "device_name", "status", "label", "suite_version"}


def _runs(results_dir):
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    experiment = client.get_experiment_by_name("vgpu-bench")
    return client, client.search_runs([experiment.experiment_id])


@pytest.mark.slow
def test_a_run_is_logged_with_params_metrics_tags_and_artifacts(cli, results_dir, tmp_path, short_tmpdir):
    done = cli("model=bert", "workload=train", "backend=cpu", "label=t1", *TINY, env={"TMPDIR": str(short_tmpdir)})
    assert done.returncode == 0, done.stderr
    # A forked worker fed by a DataLoader's workers, which it ends without tearing them down:
    # their sockets went with the run's own temporary folder.
    [result] = results_of(results_dir)
    forked = result.details["startup"]["forked"]
    assert forked and result.config["workload"]["inputs"] == "loader"
    assert list(short_tmpdir.iterdir()) == []
    # Its own folder, not the one its server's imports had made Python remember; the server's was its own too.
    own, servers = Path(result.details["startup"]["temp_dir"]), Path(forked["framework_server_temp_dir"])
    assert own.parent == servers.parent == short_tmpdir
    assert own.name.startswith("vb-") and servers.name.startswith("vb-fork-") and own != servers
    client, runs = _runs(results_dir)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "bert-train-cpu"
    assert METRICS <= set(run.data.metrics) and run.data.metrics["throughput"] > 0
    assert TAGS <= set(run.data.tags)
    assert run.data.tags["label"] == "t1" and run.data.tags["status"] == "success"
    assert run.data.params["workload.batch_size"] == "2" and run.data.params["model.resolved_size"] == "tiny"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"result.json", "worker.log", "job.json", "launch.json"} <= artifacts
    # The run's times are the worker's, so MLflow's duration is how long the worker ran.
    assert run.info.start_time == int(result.started_at * 1000) and run.info.end_time == int(result.finished_at * 1000)
    assert (run.info.end_time - run.info.start_time) / 1e3 >= result.value("measured_s")
    local = client.download_artifacts(run.info.run_id, "result.json", str(tmp_path))
    assert json.load(open(local))["run_id"] == run_dirs(results_dir)[0].name


def test_a_failed_workload_is_a_failed_run_and_the_command_exits_1(cli, results_dir):
    done = cli("model=dummy", "backend=cpu", *TINY, "backend.extra_env.VGPU_BENCH_DUMMY_FAULT=raise")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    _, runs = _runs(results_dir)
    assert runs[0].info.status == "FAILED"
    assert runs[0].data.tags["error_type"] == "RuntimeError" and runs[0].data.tags["status"] == "failed"


def test_a_sweep_goes_on_after_a_failure(cli, results_dir):
    done = cli("--multirun", "model=dummy", "backend=cpu", *TINY, "backend.extra_env.VGPU_BENCH_DUMMY_FAULT=raise,none")
    assert done.returncode == 1
    _, runs = _runs(results_dir)
    [sweep] = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
    assert sorted(r.info.status for r in children) == ["FAILED", "FINISHED"]
    assert sweep.info.status == "FAILED" and sweep.data.metrics == {"runs": 2, "failed_runs": 1}
    assert "failed: RuntimeError" in done.stdout and "success" in done.stdout  # the summary table


def test_an_unreachable_store_keeps_the_result_file(cli, results_dir):
    (results_dir / "not-a-dir").write_text("")
    done = cli("model=dummy", "backend=cpu", *TINY, f"tracking.uri=sqlite:///{results_dir}/not-a-dir/x.db")
    assert done.returncode == 1 and "could not log" in done.stderr and "the result is kept" in done.stderr
    assert len(run_dirs(results_dir)) == 1 and (run_dirs(results_dir)[0] / "result.json").exists()


def test_a_new_store_starts_from_the_installations_schema(cli, tmp_path):
    # `make setup` made the template (MLflow's migrations, once); a run into a results folder
    # with no store copies it instead of migrating, and logs there as into any store.
    from runners.tracking.write import SCHEMA_TEMPLATE_ID, schema_template

    template = schema_template()
    assert template.exists(), "make setup makes it"
    results = tmp_path / "fresh"
    done = cli("model=dummy", "backend=cpu", *TINY, f"results_dir={results}")
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    experiments = {e.name: e for e in client.search_experiments()}
    assert set(experiments) == {"Default", "vgpu-bench"}
    assert str(template.parent) not in experiments["Default"].artifact_location  # the store's own, as MLflow makes it
    [run] = client.search_runs([experiments["vgpu-bench"].experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["model"] == "dummy"
    with sqlite3.connect(results / "mlflow.db") as db:  # started as the template, not migrated here
        assert db.execute("PRAGMA application_id").fetchone()[0] == SCHEMA_TEMPLATE_ID


def test_a_store_is_copied_whole_from_the_template_or_not_at_all(tmp_path, monkeypatch):
    from runners.tracking import write

    template = tmp_path / "template.db"
    template.write_bytes(b"schema" * 1000)
    monkeypatch.setattr(write, "schema_template", lambda: template)
    store = tmp_path / "new" / "mlflow.db"
    write._start_from_schema(f"sqlite:///{store}")
    assert store.read_bytes() == template.read_bytes()
    assert [p.name for p in store.parent.iterdir()] == ["mlflow.db"]  # no copy left half-done beside it
    store.write_bytes(b"runs")
    write._start_from_schema(f"sqlite:///{store}")  # an existing store is never replaced
    assert store.read_bytes() == b"runs"


# What makes MLflow keep its telemetry to itself without the suite: its own switches, pytest's
# variable (inherited by every command a test runs) and CI systems' (the list in MLflow's
# telemetry/utils.py, _is_ci_env_or_testing). Any of them left in, and the test could not fail.
TELEMETRY_OFF = (
    "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI",
    "GITLAB_CI", "JENKINS_URL", "TRAVIS", "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE",
    "TEAMCITY_VERSION", "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID",
)  # fmt: skip


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc to build the connect() logging library")
def test_a_tracked_run_needs_no_network(results_dir, tmp_path):
    """The default path, MLflow's logging included, as a user's shell runs it: MLflow 3 sends
    usage telemetry from a thread of any process that imports it, and the suite turns it off."""
    from stand_ins import NETWORK_SHIM_C, build_library, outward_attempts

    shim = build_library(tmp_path / "no-network.so", NETWORK_SHIM_C, "-ldl")
    attempts = tmp_path / "attempts.log"
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY_OFF}
    env.update(VGPU_BENCH_RESULTS=str(results_dir), LD_PRELOAD=str(shim), NETWORK_ATTEMPTS=str(attempts))
    done = subprocess.run(
        [sys.executable, "-m", "runners.cli.bench", "model=dummy", "backend=cpu", *TINY],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(_runs(results_dir)[1]) == 1  # logged
    logged = attempts.read_text()
    assert "runners.cli.bench" in logged and outward_attempts(logged) == [], outward_attempts(logged)
