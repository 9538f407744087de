"""MPS wherever the checkout is: the daemon's pipes (Unix sockets, at most 107 bytes a path)
in a short folder of the command's own, removed afterwards; the daemon's own words in the
error when it does not start. With a stand-in control program."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from stand_ins import FAKE_MPS, FAKE_MPS_BROKEN, MPS_CLIENT_C, build_library

from runners.backends.mps import LONGEST_SOCKET, SOCKET_PATH_MAX
from runners.contracts import RESULT_FILE, Result

from conftest import TINY, run_command, run_dirs

pytestmark = pytest.mark.xdist_group("mps")  # an MPS daemon is machine-wide: one such test at a time


@pytest.fixture
def runtime_dir():
    """A short $XDG_RUNTIME_DIR of the test's own, as a login session has (/run/user/<uid>)."""
    path = Path(tempfile.mkdtemp(prefix="vbt-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _calls(fake_bin) -> list[str]:
    return fake_bin.log.read_text().splitlines() if fake_bin.log.exists() else []


def _bench(results: Path, fake_bin, runtime: Path, *args: str):
    env = {**fake_bin.env, "XDG_RUNTIME_DIR": str(runtime)}
    return run_command(results, "bench", "model=dummy", "backend=mps", *TINY, "tracking=none", *args, env=env)


def test_a_deeply_nested_results_folder_still_starts_the_daemon(tmp_path, fake_bin, runtime_dir):
    fake_bin("nvidia-cuda-mps-control", FAKE_MPS)
    results = tmp_path / ("checkout-" + "a" * 40) / ("results-" + "b" * 40) / ("gpu-check-" + "c" * 30)
    results.mkdir(parents=True)
    assert len(str(results / "backends/mps/host-12345-abcdef/pipe/control")) > 120  # what failed on the H200
    client = build_library(tmp_path / "libcuda-mps-client.so", MPS_CLIENT_C)  # the worker reaches the daemon
    done = _bench(results, fake_bin, runtime_dir, f"backend.extra_env.VGPU_BENCH_DUMMY_LOAD={client}")
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(results)
    env = Result.load(run_dir / RESULT_FILE).backend["env"]
    pipe = Path(env["CUDA_MPS_PIPE_DIRECTORY"])
    assert pipe.parent == runtime_dir and len(os.fsencode(str(pipe / LONGEST_SOCKET))) <= SOCKET_PATH_MAX
    calls = _calls(fake_bin)
    assert calls[0] == f"args=[-d] stdin=[] pipe=[{pipe}]" and calls[-1].startswith("args=[] stdin=[quit]")
    assert env["CUDA_MPS_LOG_DIRECTORY"].startswith(str(results / "backends" / "mps"))  # logs stay with results
    assert list(runtime_dir.iterdir()) == []  # the pipe folder (with the daemon's socket) is gone


def test_a_daemon_that_does_not_start_says_why_from_its_log(tmp_path, fake_bin, runtime_dir):
    fake_bin("nvidia-cuda-mps-control", FAKE_MPS_BROKEN)
    done = _bench(tmp_path, fake_bin, runtime_dir)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "could not start the MPS daemon" in done.stderr and "-d exited 1: no message" in done.stderr
    assert "Failed to bind the control socket: no such device" in done.stderr  # control.log, in the error
    assert list(runtime_dir.iterdir()) == [] and not run_dirs(tmp_path)


def test_a_socket_path_over_the_limit_is_refused_before_the_daemon_starts(tmp_path, fake_bin):
    fake_bin("nvidia-cuda-mps-control", FAKE_MPS)
    runtime = tmp_path / ("r" * 90)
    runtime.mkdir()
    done = _bench(tmp_path / "results", fake_bin, runtime)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"the MPS daemon's socket {runtime}/vb-mps-" in done.stderr
    assert f"over the {SOCKET_PATH_MAX} a Unix socket path holds" in done.stderr and "XDG_RUNTIME_DIR" in done.stderr
    assert _calls(fake_bin) == [] and list(runtime.iterdir()) == []


def test_the_tests_of_one_daemon_run_one_at_a_time(request):
    """pytest-xdist sends the tests of one xdist_group to one worker (make test: --dist loadgroup)
    by suffixing their ids; with pytest 9 the suffix no longer took, and they ran at once."""
    if request.config.getoption("loadgroup", default=False):  # set on an xdist worker only
        assert request.node.nodeid.endswith("@mps"), f"not grouped under pytest {pytest.__version__}"
