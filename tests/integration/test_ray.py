"""A sweep on a real Ray cluster: a head started on loopback, two jobs placed with what each
asks for, their results and MLflow runs back at the head (the test's results folder)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY, results_of

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """`ray start --head` on loopback with 2 CPUs, all of its files in a temporary folder, and
    an environment unlike the sweep's (its own results folder): a job that took anything from
    the head's environment instead of the sweep's would land there. Stopped even on failure:
    `--block` ties the cluster's processes to this one, in a session of their own."""
    # Ray's unix sockets live under <temp>/session_<date>_<pid>/sockets/: short, or over 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix="vb-ray-", dir="/tmp"))
    elsewhere = tmp_path / "head-env-results"
    workers_tmp = temp / "tmp"  # the TMPDIR of Ray's workers, where jobs' leftovers would be
    workers_tmp.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # keep 127.0.0.1: Ray on Linux swaps loopback for the host's IP
        RAY_TMPDIR=str(temp),
        TMPDIR=str(workers_tmp),
        VGPU_BENCH_RESULTS=str(elsewhere),
    )
    command = [
        str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
        "--num-cpus=2", "--num-gpus=0", "--object-store-memory=80000000", "--include-dashboard=false",
        "--disable-usage-stats", f"--temp-dir={temp}", f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
    ]  # fmt: skip
    log = (tmp_path / "ray-head.log").open("w")
    head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (temp / "ray_current_cluster").exists():
            assert head.poll() is None and time.monotonic() < deadline, (tmp_path / "ray-head.log").read_text()[-3000:]
            time.sleep(0.5)
        assert "Usage stats collection is disabled" in (tmp_path / "ray-head.log").read_text()  # no report home
        yield f"127.0.0.1:{port}", elsewhere, workers_tmp
    finally:
        head.send_signal(signal.SIGTERM)  # ray start --block stops its node's processes on the way out
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # whatever of the session is left
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_two_job_sweep_on_a_local_ray_head_lands_both_runs_in_mlflow(cli, results_dir, ray_head):
    address, elsewhere, workers_tmp = ray_head
    tiny = [a for a in TINY if not a.startswith("backend.threads=")]
    started = time.monotonic()
    done = cli(
        "--multirun", "hydra/launcher=ray", f"hydra.launcher.address={address}",
        "model=dummy", "backend=cpu", *tiny, "backend.threads=1,2",
        timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    print(f"ray sweep of 2 jobs: {time.monotonic() - started:.1f} s")
    # Each job was placed with what its own configuration asked for, and got it.
    for threads in (1, 2):
        assert f"backend.threads={threads}) asks {{'CPU': {threads}.0}}" in output, output[-3000:]
        assert f"with {{'CPU': {threads}.0}}" in output  # what Ray granted, seen from inside the job
    results = results_of(results_dir)
    assert sorted(r.config["backend"]["threads"] for r in results) == [1, 2]
    assert all(r.ok for r in results)
    assert len(list(results_dir.glob("hydra/multirun/*/[01]"))) == 2  # Hydra's job folders, at the head
    assert not elsewhere.exists()  # nothing went by the head's environment
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id])
    assert sorted(r.data.params["backend.threads"] for r in runs) == ["1", "2"]
    assert {r.data.tags["run_id"] for r in runs} == {r.run_id for r in results}
    assert all(r.info.status == "FINISHED" for r in runs)
    # Ray ends a command's workers without their exit handlers: the fork servers of a job end with it.
    assert list(workers_tmp.iterdir()) == []


def test_a_ray_sweep_without_a_cluster_says_so_in_one_line(cli):
    done = cli("--multirun", "hydra/launcher=ray", "hydra.launcher.address=127.0.0.1:1", "model=dummy", "seed=1,2")
    assert done.returncode == 2 and "the Ray head at 127.0.0.1:1 does not answer" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
