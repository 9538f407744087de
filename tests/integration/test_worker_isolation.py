"""The failure paths of the isolated worker, with the framework-free dummy workload."""

import json
import subprocess
import sys
import textwrap

import psutil
import pytest

from runners.contracts import LAUNCH_FILE, LOG_FILE, RESULT_FILE, Result
from runners.parent import compose
from runners.parent.launch import _stop, launch
from runners.parent.plan import plan

from conftest import TINY


def _launch(results_dir, *overrides):
    config = compose.compose_config(
        compose.check_overrides(
            ["model=dummy", "backend=cpu", "tracking=none", *TINY, f"results_dir={results_dir}", *overrides]
        )
    )
    return launch(plan(config))


def test_success_writes_a_complete_result(results_dir):
    result, run_dir = _launch(results_dir)
    assert result.ok and result.error is None
    assert result.value("throughput") > 0 and result.value("steps") >= 2
    assert Result.load(run_dir / RESULT_FILE) == result
    assert (run_dir / LOG_FILE).read_text().count("[worker") >= 2
    assert json.loads((run_dir / LAUNCH_FILE).read_text())["exit_code"] == 0


def test_an_exception_is_recorded_with_its_traceback(results_dir):
    result, _ = _launch(results_dir, "backend.extra_env.VGPU_BENCH_DUMMY_FAULT=raise")
    assert result.status == "failed"
    assert result.error.type == "RuntimeError"
    assert "failed on purpose" in result.error.message
    assert "dummy.py" in result.error.traceback
    assert result.environment.host  # the fingerprint is written on failure too


def test_an_exit_without_a_result_becomes_a_failed_result(results_dir):
    result, run_dir = _launch(results_dir, "backend.extra_env.VGPU_BENCH_DUMMY_FAULT=exit")
    assert result.error.type == "WorkerExited" and "code 3" in result.error.message
    assert json.loads((run_dir / LAUNCH_FILE).read_text())["exit_code"] == 3
    assert Result.load(run_dir / RESULT_FILE).status == "failed"


def test_a_crash_names_the_signal(results_dir):
    result, _ = _launch(results_dir, "backend.extra_env.VGPU_BENCH_DUMMY_FAULT=segfault")
    assert result.error.type == "WorkerKilled" and "SIGSEGV" in result.error.message


def test_a_hang_is_killed_at_the_timeout(results_dir):
    result, run_dir = _launch(results_dir, "backend.extra_env.VGPU_BENCH_DUMMY_FAULT=hang", "timeout_s=2")
    assert result.error.type == "Timeout" and "timeout_s=2" in result.error.message
    assert "dummy.py" in result.error.traceback  # the worker's own traceback says where it was
    assert Result.load(run_dir / RESULT_FILE) == result  # written once, by the worker


def test_stopping_a_worker_stops_descendants_in_sessions_of_their_own():
    # What torchrun does: each rank in a new session, out of reach of the worker's process
    # group; here the "rank" also ignores SIGTERM, as one stuck in native code does.
    launcher = textwrap.dedent("""
        import signal, subprocess, sys, time
        rank = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(600)"],
                                start_new_session=True, stdout=subprocess.PIPE)
        rank.stdout.readline()
        print(rank.pid, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", launcher], start_new_session=True, stdout=subprocess.PIPE, text=True)
    rank = psutil.Process(int(proc.stdout.readline()))
    assert rank.pid != proc.pid and rank.status() != psutil.STATUS_ZOMBIE
    _stop(proc)
    assert proc.poll() is not None
    assert not rank.is_running() or rank.status() == psutil.STATUS_ZOMBIE


def test_the_worker_gets_the_backend_environment(results_dir):
    result, run_dir = _launch(results_dir, "backend.threads=1", "backend.extra_env.SOME_SECRET=hidden")
    seen = result.evidence.env  # what the worker itself saw, not what the parent meant to set
    assert seen["OMP_NUM_THREADS"] == "1" and seen["CUDA_VISIBLE_DEVICES"] == ""
    assert seen["SOME_SECRET"] == "***" and "hidden" not in (run_dir / RESULT_FILE).read_text()
    assert result.environment.framework == {} and result.evidence.engaged


@pytest.mark.parametrize("module", ["runners.cli.bench", "runners.tracking.write"])
def test_the_orchestrator_never_imports_a_framework(module):
    import subprocess
    import sys

    code = (
        f"import sys, {module}, mlflow, runners.parent.plan, runners.parent.launch, zoo; "
        "bad = [m for m in ('torch', 'tensorflow', 'transformers') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
