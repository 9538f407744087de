"""Data-parallel training on 2 CPU processes, a local-mode cluster launcher, the team server."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO, TINY, groups_of, results_of, run_dirs


def _unresolvable_hostname() -> tuple[str, ...]:
    """A prefix that runs a command under a host name no resolver knows, as in some CI sandboxes
    and containers (where torchrun's `--standalone` rendezvous once hung); () where it cannot."""
    prefix = ("unshare", "--uts", "sh", "-c", 'hostname vgpu-bench-unresolvable.invalid && exec "$@"', "sh")
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return prefix if probe.returncode == 0 else ()


@pytest.mark.slow
def test_train_ddp_runs_two_cpu_processes_and_reports_scaling(cli, results_dir, short_tmpdir):
    done = cli(
        "model=bert",
        "workload=train_ddp",
        "backend=cpu",
        *TINY,
        "workload.min_steps=3",
        "timeout_s=240",
        timeout=600,
        prefix=_unresolvable_hostname(),
        env={"TMPDIR": str(short_tmpdir)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # torchrun's logs and the sockets of the ranks' DataLoader workers went with each run's own folder
    assert list(short_tmpdir.iterdir()) == []
    results = {len(r.details["ddp"]["per_rank_throughput"]): r for r in results_of(results_dir)}
    one, two = results[1], results[2]
    assert (one.group.role, two.group.role) == ("reference", "scaled")
    assert two.details["ddp"]["world_size"] == 2 and two.details["ddp"]["backend"] == "gloo"
    assert two.value("throughput") == pytest.approx(sum(two.details["ddp"]["per_rank_throughput"]))
    [group] = groups_of(results_dir)  # the efficiency belongs to the pair, not to either run
    assert group.kind == "scaling" and "scaling_efficiency" not in two.metrics
    assert group.value("scaling_efficiency") == pytest.approx(two.value("throughput") / (2 * one.value("throughput")))
    assert any(p.name == "result-rank1.json" for d in run_dirs(results_dir) for p in d.iterdir())
    # The reference and each rank ran with the same share of the cores (threads as torch saw them).
    assert (
        one.environment.framework["threads"]
        == two.environment.framework["threads"]
        == max(1, len(os.sched_getaffinity(0)) // 2)
    )
    assert "scaling efficiency" in done.stderr
    # The share of the cores is part of the planned configuration: resume finds the run by it.
    again = cli(
        "model=bert", "workload=train_ddp", "backend=cpu", *TINY, "workload.min_steps=3", "timeout_s=240", "resume=true"
    )
    assert again.returncode == 0 and "skipped, already done" in again.stderr, again.stderr[-2000:]


def test_a_dry_run_of_cpu_ranks_shows_their_share_of_the_cores(cli):
    done = cli("model=bert", "workload=train_ddp", "backend=cpu", "workload.processes=2", "dry_run=true")
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert done.returncode == 0 and f"OMP_NUM_THREADS={threads}" in done.stdout, done.stdout


def test_a_local_mode_launcher_sweep_lands_in_mlflow(cli, results_dir):
    done = cli("--multirun", "hydra/launcher=local", "model=dummy", "backend=cpu", *TINY, "seed=1,2", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(results_dir.glob("hydra/submitit/*"))  # the jobs ran through submitit
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id])
    assert sorted(r.data.params["seed"] for r in runs if "run_id" in r.data.tags) == ["1", "2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(env: dict, port: int):
    recipe = re.search(r"^mlflow-server:.*\n((?:\t.+\n)+)", (REPO / "Makefile").read_text(), re.M).group(1)
    assert "--host $(HOST)" in recipe and "HOST ?= 127.0.0.1" in (REPO / "Makefile").read_text()
    return subprocess.Popen(
        ["make", "-s", "mlflow-server", f"PORT={port}", "MLFLOW_WORKERS=1", f"VENV={Path(sys.executable).parents[1]}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait(url: str) -> None:
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} never answered")


def _bench_against(cli, port: int):
    done = cli(
        "model=dummy", "backend=cpu", *TINY, "label=team", env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient(f"http://127.0.0.1:{port}")
    [run] = client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id])
    assert run.data.tags["label"] == "team" and run.data.metrics["throughput"] > 0


def _stop(server):
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=60)


@pytest.mark.slow
def test_team_server_on_loopback_with_the_sqlite_store(cli, results_dir, tmp_path):
    port = _free_port()
    env = {**os.environ, "RESULTS": str(tmp_path / "server")}
    env.pop("MLFLOW_BACKEND_URI", None)
    server = _server(env, port)
    try:
        _wait(f"http://127.0.0.1:{port}/health")
        _bench_against(cli, port)
        assert (tmp_path / "server" / "mlflow.db").exists()
    finally:
        _stop(server)


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.mark.slow
@pytest.mark.skipif(
    _postgres_bin() is None or os.geteuid() != 0 or not shutil.which("su"),
    reason="needs PostgreSQL's server binaries (make test installs them where it can)",
)
def test_team_server_with_a_real_postgresql_backend(cli, tmp_path):
    import tempfile

    # The server runs as the postgres user, who cannot enter pytest's private temp folders
    # (the session's TMPDIR is one of them): a folder of its own in /tmp, removed below.
    data = Path(tempfile.mkdtemp(prefix="vgpu-bench-pg-", dir="/tmp"))
    shutil.chown(data, "postgres")
    bin_dir, port, pg_port = _postgres_bin(), _free_port(), _free_port()
    run = lambda command: subprocess.run(  # noqa: E731
        ["su", "postgres", "-c", command],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    run(f"{bin_dir}/initdb -D {data} -A trust -U postgres")
    run(f"{bin_dir}/pg_ctl -D {data} -l {data}/log -o '-p {pg_port} -k {data} -h 127.0.0.1' -w start")
    try:
        run(f"{bin_dir}/createdb -h 127.0.0.1 -p {pg_port} -U postgres mlflow")
        env = {
            **os.environ,
            "MLFLOW_BACKEND_URI": f"postgresql://postgres@127.0.0.1:{pg_port}/mlflow",
            "RESULTS": str(tmp_path / "server"),
        }
        server = _server(env, port)
        try:
            _wait(f"http://127.0.0.1:{port}/health")
            _bench_against(cli, port)
            tables = run(
                f'{bin_dir}/psql -h 127.0.0.1 -p {pg_port} -U postgres -d mlflow -tAc "select count(*) from runs"'
            ).stdout.strip()
            assert tables == "1"  # the run is in PostgreSQL
        finally:
            _stop(server)
    finally:
        run(f"{bin_dir}/pg_ctl -D {data} -m fast stop")
        shutil.rmtree(data, ignore_errors=True)
