"""plan -> isolated worker -> result file. The worker is a child process in its own
session, started with the backend's environment and killed at its deadline. The worker
writes the result; the parent writes one only when the worker could not (timeout, crash),
so every result file is written exactly once. How the worker ended goes to launch.json."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import psutil

from runners import REPO_ROOT
from runners.contracts import (
    JOB_FILE,
    LAUNCH_FILE,
    LOG_FILE,
    RESULT_FILE,
    STOP_FILE,
    GroupRef,
    Job,
    Result,
    TenantBarrier,
)
from runners.parent import fork_servers
from runners.parent.plan import Plan
from runners.parent.temp_folders import temporary_folder
from runners.redact import redact_env

KILL_GRACE_S = 5.0
INTERRUPTED = "the command was interrupted (Ctrl-C or SIGTERM) while this worker ran"
POLL_S = 0.25
_LOOPBACK = next((name for _, name in socket.if_nameindex() if name in ("lo", "lo0")), None)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the worker's process group, SIGKILL after a grace period; then SIGKILL to
    whatever is left of its process tree: torchrun starts each rank in a session of its own,
    and a rank stuck in native code never runs its SIGTERM handler."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()  # psutil checks it is still the same process, not a reused pid
    psutil.wait_procs(tree, timeout=KILL_GRACE_S)


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 4096))
            lines = handle.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""
    except OSError:
        return ""


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_only_env(plan: Plan, run_dir: Path, temp: Path) -> dict[str, str]:
    """The variables of this run alone, none of its start environment: the backend's own for
    the run, and its temporary folder."""
    return {**plan.backend.run_environment(run_dir), "TMPDIR": str(temp)}


def worker_env(plan: Plan, run_only: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(plan.backend.environment())
    env.update(run_only)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    if plan.ranks and _LOOPBACK:
        env.setdefault("GLOO_SOCKET_IFNAME", _LOOPBACK)  # gloo too picks its address from the host's name
    return env


def worker_command(job_path: Path, ranks: Optional[int] = None) -> list[str]:
    """One worker process, or `ranks` processes started by torchrun (train_ddp, even with one rank)."""
    if ranks is None:
        return [sys.executable, "-m", "runners.worker", str(job_path)]
    # One node, rendezvous on loopback said explicitly: `--standalone` advertises the host's
    # name, and where that name does not resolve (containers, CI sandboxes) every rank waits forever.
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=127.0.0.1:0",
        "--local-addr=127.0.0.1",
        f"--nproc-per-node={ranks}",
        "-m",
        "runners.worker",
        str(job_path),
    ]


def forkable(plan: Plan, task: str) -> bool:
    """Whether this run's worker may be forked from a fork server (runners/parent/fork_servers.py):
    a model run on a backend that allows it, in one process (torchrun starts its own ranks),
    in the model's own framework (an exported runtime loads libraries of its own)."""
    config = plan.config
    return (
        getattr(config, "fork_server", False)
        and plan.entry is not None
        and plan.backend.fork_safe
        and task in ("workload", "parity")
        and not (task == "workload" and plan.ranks)
        and config.runtime.name in ("auto", plan.entry.framework)
    )


def start_worker(plan: Plan, job: Job, job_path: Path, log, run_only: dict[str, str]):
    """The run's worker process: forked from its start environment's fork server where it
    may be, else a fresh `python -m runners.worker`."""
    env = worker_env(plan, run_only)
    if forkable(plan, job.task):
        request = {
            "job": str(job_path),
            "cwd": str(REPO_ROOT),
            "log": log.name,
            "model": job.model.name,
            "size": job.model.size,
        }
        forked = fork_servers.servers.spawn(env, run_only, plan.entry.framework, request, plan.config.timeout_s)
        if forked is not None:
            return forked
    return subprocess.Popen(
        worker_command(job_path, plan.ranks if job.task == "workload" else None),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=REPO_ROOT,
        start_new_session=True,
    )


def plan_text(plan: Plan) -> str:
    """What a run would do, for `dry_run=true`: nothing is started or written."""
    backend, config = plan.backend, plan.config
    lines = [
        f"dry run: {plan.run_name} (nothing is started)",
        f"  backend: {backend.name} ({backend.summary}), device {backend.device}"
        + (f", requested {backend.requested}" if backend.requested != backend.name else ""),
        f"  preflight: {'FAILS: ' + plan.preflight_error if plan.preflight_error else 'ok'}",
        *([f"  model: {plan.entry.name}, size {plan.entry.size}"] if plan.entry else []),
        f"  worker: {' '.join(worker_command(plan.results_dir / 'runs' / '<run-id>' / JOB_FILE, plan.ranks))}"
        + (
            " (forked from a fork server started with this environment; fork_server=false: afresh)"
            if forkable(plan, plan.task)
            else ""
        ),
        f"  cwd: {REPO_ROOT}; timeout: {config.timeout_s:g} s; tenants: {getattr(config, 'tenants', 1)}",
        "  environment changes:",
    ]
    env = {**backend.environment(), **backend.run_environment(plan.results_dir / "runs" / "<run-id>")}
    lines += [f"    {k}={v}" for k, v in redact_env(env).items()]
    lines.append("    TMPDIR=<a folder of the run's own, removed when the run ends>")
    for phase, commands in backend.daemon_commands().items():
        lines += [f"  daemon {phase}: {command}" for command in commands]
    return "\n".join(lines)


def launch(
    plan: Plan,
    progress: Callable[[str], None] = lambda line: None,
    group: Optional[GroupRef] = None,
    barrier: Optional[TenantBarrier] = None,
    task: Optional[str] = None,
    parity_steps: int = 0,
) -> tuple[Result, Path]:
    """Run `plan` in a worker; return its result and run directory. `group` says which run
    of a group this is, `barrier` makes tenants start measuring together, `task` replaces
    the plan's own (parity)."""
    from runners.contracts import group_suffix

    job = plan.job(group_suffix(group), group, barrier, task, parity_steps)
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True)
    job.spawned_at = time.time()
    job_path = run_dir / JOB_FILE
    job.write(job_path)
    log_path = run_dir / LOG_FILE
    timeout_s = plan.config.timeout_s
    timeout_message = f"worker exceeded timeout_s={timeout_s:g} and was stopped"
    timed_out = False

    with open(log_path, "wb") as log, temporary_folder() as temp:
        proc = None
        interrupted = True  # until the loop ends by itself: Ctrl-C or SIGTERM reach the parent in it
        try:
            run_only = run_only_env(plan, run_dir, temp)
            proc = start_worker(plan, job, job_path, log, run_only)  # a fork server may start first
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    proc.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        timed_out = True
                        # The worker records the reason itself when it still can; else the parent does below.
                        (run_dir / STOP_FILE).write_text(json.dumps({"type": "Timeout", "message": timeout_message}))
                        _stop(proc)
                        break
                    progress(_last_line(log_path))
            interrupted = False
        finally:
            if interrupted:  # never leave a worker behind, nor a run without its result
                (run_dir / STOP_FILE).write_text(json.dumps({"type": "Stopped", "message": INTERRUPTED}))
                if proc is not None:
                    _stop(proc)
                if not (run_dir / RESULT_FILE).exists():  # stopped before it could record anything
                    Result.for_job(job).fail("Stopped", INTERRUPTED, _tail(log_path)).write(run_dir / RESULT_FILE)
            plan.backend.end_run(run_dir)

    result_path = run_dir / RESULT_FILE
    code = proc.wait()  # already ended; a forked worker's status may still be on its way from its server
    (run_dir / LAUNCH_FILE).write_text(
        json.dumps({"exit_code": code, "timed_out": timed_out, "timeout_s": timeout_s, "ended_at": time.time()})
    )
    if result_path.exists():  # the worker's own record stands, whatever happened after it was written
        return Result.load(result_path), run_dir
    result = Result.for_job(job)
    if timed_out:
        result.fail("Timeout", timeout_message + " (killed: it did not end on SIGTERM)", _tail(log_path))
    elif code < 0:
        name = signal.Signals(-code).name
        hint = " (possibly the out-of-memory killer)" if name == "SIGKILL" else ""
        result.fail("WorkerKilled", f"worker killed by {name}{hint} before writing a result", _tail(log_path))
    else:
        result.fail("WorkerExited", f"worker exited with code {code} before writing a result", _tail(log_path))
    result.write(result_path)
    return result, run_dir
