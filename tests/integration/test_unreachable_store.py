"""A tracking server that does not answer costs seconds, once per command, not MLflow's minutes
of retries per run: the results stay as files, marked unsynced for `make sync`."""

import socket
import time

import pytest

from runners.tracking import write

from conftest import TINY, run_dirs


def _closed_port() -> int:
    """A local port nothing listens on: a connection to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_sweep_against_a_server_that_is_down_keeps_every_result_unsynced_within_seconds(cli, results_dir):
    uri = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    done = cli("--multirun", "model=dummy", "backend=cpu", *TINY, "label=a,b", env={"MLFLOW_TRACKING_URI": uri})
    elapsed = time.monotonic() - started
    assert elapsed < 60, elapsed  # MLflow's own retries took 4 min 15 s for one run
    assert done.returncode == 1 and done.stderr.count("could not log") == 2, done.stderr
    assert "did not accept a connection" in done.stderr
    assert "the result is kept" in done.stderr and "make sync" in done.stderr
    dirs = run_dirs(results_dir)
    assert len(dirs) == 2 and all((d / write.UNSYNCED_FILE).exists() and (d / "result.json").exists() for d in dirs)


def test_the_store_is_probed_once_per_process(monkeypatch):
    tries = []

    def refuse(address, timeout):
        tries.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(write, "_unreachable", {})
    monkeypatch.setattr(write.socket, "create_connection", refuse)
    uri = "http://mlflow.invalid:5000"
    for _ in range(3):
        with pytest.raises(write.StoreUnreachable, match="did not accept a connection"):
            write.check_reachable(uri)
    assert tries == [("mlflow.invalid", 5000)]
    write.check_reachable("sqlite:////tmp/x.db")  # a local store is not probed
    assert len(tries) == 1
