"""The fast start (runners/parent/fork_servers.py, runners/worker/fork_server.py): a sweep's
workers are forked from a model server, itself forked from one process per start environment
and framework that imported the framework once.
What a fresh worker has must hold for a forked one: the same weights for a seed, a preloaded
library mapped, only its own variables, no process left behind; where forking is not safe,
runs start afresh."""

import contextlib
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from stand_ins import build_library

from runners.contracts import RESULT_FILE, Result

from conftest import REPO, TINY, results_of, run_command

needs_gcc = pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc to build stand-in libraries")
CHEAP = ["model=dummy", "backend=cpu", "tracking=none", *TINY]

# A library that starts a thread when it loads: a layer whose threads a fork would copy
# without their owners (their locks stay held in the child), so the server must refuse.
THREAD_AT_LOAD_C = r"""
#include <pthread.h>
#include <unistd.h>
static void *idle(void *arg) { for (;;) pause(); return arg; }
__attribute__((constructor)) static void start(void) { pthread_t t; pthread_create(&t, 0, idle, 0); }
"""


def _forked(result) -> dict:
    return (result.details.get("startup") or {}).get("forked") or {}


def _of_this_test(process, results_dir) -> bool:
    """A process of this test's command (its workers and fork servers have its results folder)."""
    try:
        return process.environ().get("VGPU_BENCH_RESULTS") == str(results_dir)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _left_behind(results_dir) -> list:
    """Processes of this test's command still running (fork servers, workers): none may be."""
    return [
        process.info["cmdline"] for process in psutil.process_iter(["cmdline"]) if _of_this_test(process, results_dir)
    ]


@pytest.mark.slow
def test_a_forked_worker_builds_the_same_weights_as_a_fresh_one(results_dir):
    # No weight cache: both sides initialize from the seed, one in a fresh process, one forked.
    done = run_command(
        results_dir,
        "parity",
        "model=bert",
        "baseline=backend=cpu fork_server=false",
        "candidate=backend=cpu fork_server=true",
        "model.size=tiny",
        "workload.batch_size=2",
        "workload.seq_len=16",
        "steps=2",
        "tracking=none",
        env={"VGPU_BENCH_WEIGHT_CACHE_MAX_MB": "0"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = {bool(_forked(r)): r for r in results_of(results_dir)}
    assert set(results) == {False, True}, "one side forked, the other started afresh"
    outputs = {forked: np.load(results_dir / "runs" / r.run_id / "outputs.npy") for forked, r in results.items()}
    assert np.array_equal(outputs[False], outputs[True])
    losses = {forked: r.details["parity"]["losses"] for forked, r in results.items()}
    assert losses[False] == losses[True]
    assert not _left_behind(results_dir)


@needs_gcc
def test_a_preloaded_library_is_mapped_into_every_forked_worker(results_dir, tmp_path):
    library = build_library(tmp_path / "layer" / "libvgpu.so", "int stand_in(void) { return 0; }\n")
    done = run_command(results_dir, "bench", *CHEAP, "repeats=3", f"backend.extra_env.LD_PRELOAD={library}")
    assert done.returncode == 0, done.stdout + done.stderr
    results = results_of(results_dir)
    assert len(results) == 3 and all(r.status == "success" for r in results)
    forked = [_forked(r) for r in results]
    assert all(forked) and len({f["server_pid"] for f in forked}) == 1, "one server forked all three"
    assert sorted(f["runs_before"] for f in forked) == [0, 1, 2]
    for result in results:
        assert result.evidence.libraries.get("libvgpu") == str(library), result.evidence.libraries
    assert not _left_behind(results_dir)


def test_a_variable_of_one_run_never_reaches_the_next(results_dir):
    # The first run's environment makes its model fail; the second run's has no such variable.
    done = run_command(
        results_dir, "bench", "--multirun", *CHEAP, "backend.extra_env={VGPU_BENCH_DUMMY_FAULT:raise},{}"
    )
    results = sorted(results_of(results_dir), key=lambda r: r.started_at)
    assert [r.status for r in results] == ["failed", "success"], done.stdout + done.stderr
    assert all(_forked(r) for r in results)
    assert (
        results[0].details["startup"]["forked"]["server_pid"] != results[1].details["startup"]["forked"]["server_pid"]
    )
    assert "VGPU_BENCH_DUMMY_FAULT" not in results[1].evidence.env
    assert not _left_behind(results_dir)


@needs_gcc
@pytest.mark.parametrize(
    "library, source, reason",
    [
        ("libthreads.so", THREAD_AT_LOAD_C, "thread(s) it cannot account for"),
        # A driver loaded before the fork (as torch.cuda.is_available() does): no child could use it.
        ("libcuda.so.1", "int cuInit(unsigned flags) { return 0; }\n", "loaded libcuda.so.1"),
    ],
)
def test_where_forking_is_unsafe_runs_start_afresh_and_say_so(results_dir, tmp_path, library, source, reason):
    library = build_library(tmp_path / "layer" / library, source, "-pthread")
    done = run_command(results_dir, "bench", *CHEAP, "repeats=2", f"backend.extra_env.LD_PRELOAD={library}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fork server not used" in done.stderr and reason in done.stderr, done.stderr
    results = results_of(results_dir)
    assert [r.status for r in results] == ["success", "success"]
    assert not any(_forked(r) for r in results)
    assert not _left_behind(results_dir)


def test_fork_server_false_starts_every_worker_afresh_and_a_dry_run_says_which(results_dir):
    done = run_command(results_dir, "bench", *CHEAP, "repeats=2", "fork_server=false")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not any(_forked(r) for r in results_of(results_dir))
    dry = run_command(results_dir, "bench", *CHEAP, "dry_run=true")
    assert "forked from a fork server" in dry.stdout
    fresh = run_command(results_dir, "bench", *CHEAP, "dry_run=true", "fork_server=false")
    assert "forked" not in fresh.stdout


def test_a_forked_worker_past_its_timeout_is_stopped_and_recorded(results_dir):
    done = run_command(
        results_dir, "bench", *CHEAP, "timeout_s=3", "backend.extra_env.VGPU_BENCH_DUMMY_FAULT=hang", timeout=120
    )
    assert done.returncode != 0
    (result,) = results_of(results_dir)
    assert result.status == "failed" and result.error.type == "Timeout", result.error
    assert _forked(result), "the forked worker recorded its own stop, with what it inherited"
    assert not _left_behind(results_dir)


def _sweep(results_dir, *overrides: str) -> subprocess.Popen:
    """A command in the background, for a test that acts on its servers while it runs."""
    return subprocess.Popen(
        [sys.executable, "-m", "runners.cli.bench", *overrides],
        cwd=REPO,
        env={**os.environ, "VGPU_BENCH_RESULTS": str(results_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(what: str, found, deadline: float):
    """`found()`'s first true answer, polled until `deadline`."""
    while time.monotonic() < deadline:
        if answer := found():
            return answer
        time.sleep(0.05)
    raise AssertionError(f"no {what} before the deadline")


def _servers_of(results_dir) -> dict[int, int]:
    """This test's fork servers, pid -> parent pid: a framework server's parent is the command,
    a model server's is its framework server (both run `runners.worker.fork_server`)."""
    found = {}
    for process in psutil.process_iter(["cmdline", "ppid"]):
        if "runners.worker.fork_server" in " ".join(process.info["cmdline"] or []) and _of_this_test(
            process, results_dir
        ):
            found[process.pid] = process.info["ppid"]
    return found


def _model_server_with_a_run(results_dir) -> tuple[int, int] | None:
    """(framework server, model server) once a model server has forked a run that is running."""
    servers = _servers_of(results_dir)
    for pid, parent in servers.items():
        with contextlib.suppress(psutil.NoSuchProcess):  # ended since it was listed: look again
            if parent in servers and any(_of_this_test(c, results_dir) for c in psutil.Process(pid).children()):
                return parent, pid
    return None


def _results_so_far(results_dir) -> list:
    """The results written so far (each file is written whole), oldest first."""
    done = [Result.load(path) for path in results_dir.glob(f"runs/*/{RESULT_FILE}")]
    return sorted(done, key=lambda r: r.started_at)


def _alive(pid: int, results_dir) -> bool:
    try:
        return _of_this_test(psutil.Process(pid), results_dir) and psutil.Process(pid).status() != "zombie"
    except psutil.NoSuchProcess:
        return False


def test_models_of_one_framework_share_its_server_and_each_run_holds_only_its_models_libraries(results_dir):
    """Torch is imported once for the three models (one framework server); transformers once
    for BERT and GPT-2 (one model server, kept while DLRM runs between them), and DLRM's worker,
    from a model server of its own, does not carry it. BERT's run adds nothing to what GPT-2's
    inherits."""
    done = run_command(
        results_dir, "bench", "--multirun", "model=bert,dlrm,gpt2", "backend=cpu", "tracking=none", *TINY
    )
    assert done.returncode == 0, done.stdout + done.stderr
    forked = {r.model.name: _forked(r) for r in results_of(results_dir)}
    assert set(forked) == {"bert", "dlrm", "gpt2"} and all(forked.values()), forked
    assert len({f["framework_server_pid"] for f in forked.values()}) == 1
    assert forked["bert"]["server_pid"] == forked["gpt2"]["server_pid"] != forked["dlrm"]["server_pid"]
    assert forked["bert"]["libraries"] == ["transformers", "transformers.modeling_utils"]
    assert forked["dlrm"]["libraries"] == []
    assert (forked["bert"]["runs_before"], forked["gpt2"]["runs_before"]) == (0, 1)
    assert forked["gpt2"]["packages"] == forked["bert"]["packages"]
    assert "torch" in forked["dlrm"]["packages"] and "transformers" in forked["bert"]["packages"]
    assert "transformers" not in forked["dlrm"]["packages"], forked["dlrm"]["packages"]
    assert forked["dlrm"]["server_rss_mb"] < forked["bert"]["server_rss_mb"]
    assert 0 < forked["bert"]["framework_import_s"] < forked["bert"]["framework_server_ready_s"]
    assert 0 < forked["bert"]["model_import_s"] < forked["bert"]["server_ready_s"]
    assert not _left_behind(results_dir)


def test_a_model_server_imports_what_its_models_share_and_each_run_its_own_classes():
    """The server of bert, gpt2, llama and t5 holds transformers' core; BERT's classes are the
    BERT run's to import, so a GPT-2 run forked after it does not carry them."""
    script = (
        "import sys; from runners.worker.fork_server import warm; import zoo; "
        "_, libraries = warm('bert', 'tiny'); bert = 'transformers.models.bert.modeling_bert'; "
        "print(list(libraries), 'transformers.modeling_utils' in sys.modules, bert in sys.modules); "
        "zoo.get('bert')('tiny').import_framework(); print(bert in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["['transformers', 'transformers.modeling_utils'] True False", "True"]


def test_servers_of_another_start_environment_are_retired_and_end_while_the_sweep_goes_on(results_dir):
    """A variable that differs (the thread count) makes a new start environment: the servers of
    the one before end once its runs have, and those of the new one serve on."""
    command = _sweep(results_dir, *CHEAP, "--multirun", "backend.threads=1,2", "workload.min_duration_s=1.5")
    deadline = time.monotonic() + 120
    first = _wait_for("a run forked in the second environment", lambda: _second_forked(results_dir), deadline)
    for pid in (_forked(first)["server_pid"], _forked(first)["framework_server_pid"]):
        _wait_for(f"server {pid} to end", lambda pid=pid: not _alive(pid, results_dir), deadline)
    assert command.poll() is None, "the second run still measures"
    out, err = command.communicate(timeout=120)
    assert command.returncode == 0, out + err
    second = sorted(results_of(results_dir), key=lambda r: r.started_at)[1]
    assert _forked(second)["framework_server_pid"] != _forked(first)["framework_server_pid"]
    assert not _left_behind(results_dir)


def _second_forked(results_dir):
    """The first run's result once the second run's model server has forked it (it measures)."""
    done = _results_so_far(results_dir)
    return done[0] if done and _model_server_with_a_run(results_dir) else None


def _kill_mid_sweep(results_dir, server: str) -> tuple[list, int]:
    """Three runs of a sweep; the framework or the model server of the first is killed while it
    measures. The command ends without a traceback, with a note; its results in start order, and
    the model server's pid."""
    command = _sweep(
        results_dir,
        *CHEAP,
        "repeats=3",
        "workload.min_duration_s=2",
        "backend.extra_env.VGPU_BENCH_DUMMY_FAULT=sleep:0.05",
    )
    framework, model = _wait_for("run forked", lambda: _model_server_with_a_run(results_dir), time.monotonic() + 120)
    psutil.Process(framework if server == "framework" else model).kill()
    out, err = command.communicate(timeout=180)
    assert "Traceback" not in out + err, err
    assert "fork server not used" in err, err
    return sorted(results_of(results_dir), key=lambda r: r.started_at), model


def test_a_framework_server_that_dies_mid_sweep_lets_its_run_end_and_the_rest_start_afresh(results_dir):
    """Killed (say, by the out-of-memory killer) while a run forked from one of its model
    servers measures: that run ends and is recorded, its model server ends after it, the next
    runs start afresh with a note, and the command ends without a traceback."""
    results, model = _kill_mid_sweep(results_dir, "framework")
    assert [r.status for r in results] == ["success"] * 3, [r.error for r in results]
    assert [bool(_forked(r)) for r in results] == [True, False, False]
    assert _forked(results[0])["server_pid"] == model
    assert not _left_behind(results_dir)


def test_a_model_server_that_dies_mid_sweep_costs_its_run_and_the_rest_start_afresh(results_dir):
    """Killed (say, by the out-of-memory killer) while its child runs: that run is recorded as
    killed, the next ones start afresh with a note, and the command ends without a traceback."""
    results, _ = _kill_mid_sweep(results_dir, "model")
    assert len(results) == 3
    assert results[0].status == "failed" and results[0].error.type == "WorkerKilled", results[0].error
    assert [bool(_forked(r)) for r in results[1:]] == [False, False]
    assert [r.status for r in results[1:]] == ["success", "success"]
    assert not _left_behind(results_dir)
