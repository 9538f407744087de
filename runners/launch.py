"""plan -> isolated worker -> result file. The worker is a child process in its own
session, started with the backend's environment and killed at its deadline. Whatever
happens to it, a result file exists afterwards."""
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
from typing import Any, Callable

import psutil

from runners import results
from runners.plan import Job
from runners.redact import redact_env

REPO_ROOT = Path(__file__).resolve().parents[1]
KILL_GRACE_S = 5.0
POLL_S = 0.25


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


def worker_env(job: Job) -> dict[str, str]:
    env = dict(os.environ)
    env.update(job.backend.environment())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    if _ranks(job) and _LOOPBACK:
        env.setdefault("GLOO_SOCKET_IFNAME", _LOOPBACK)  # gloo too picks its address from the host's name
    return env


_LOOPBACK = next((name for _, name in socket.if_nameindex() if name in ("lo", "lo0")), None)


def worker_command(job_path: Path, ranks: int | None = None) -> list[str]:
    """One worker process, or `ranks` processes started by torchrun (train_ddp, even with one rank)."""
    if ranks is None:
        return [sys.executable, "-m", "runners.worker", str(job_path)]
    # One node, rendezvous on loopback said explicitly: `--standalone` advertises the host's
    # name, and where that name does not resolve (containers, CI sandboxes) every rank waits forever.
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--rdzv-backend=c10d",
            "--rdzv-endpoint=127.0.0.1:0", "--local-addr=127.0.0.1", f"--nproc-per-node={ranks}",
            "-m", "runners.worker", str(job_path)]


def _ranks(job: Job) -> int | None:
    workload = job.config.workload
    return workload.processes if workload.kind.value == "train_ddp" else None


def plan_text(job: Job) -> str:
    """What a run would do, for `dry_run=true`: nothing is started or written."""
    backend, config = job.backend, job.config
    lines = [f"dry run: {job.run_name} (nothing is started)",
             f"  backend: {backend.name} ({backend.summary}), device {backend.device}"
             + (f", requested {backend.requested}" if backend.requested != backend.name else ""),
             f"  preflight: {'FAILS: ' + job.preflight_error if job.preflight_error else 'ok'}",
             f"  worker: {' '.join(worker_command(job.results_dir / 'runs' / '<run-id>' / results.JOB_FILE, _ranks(job)))}",
             f"  cwd: {REPO_ROOT}; timeout: {config.timeout_s:g} s; tenants: {config.tenants}",
             "  environment changes:"]
    lines += [f"    {k}={v}" for k, v in redact_env(backend.environment()).items()] or ["    (none)"]
    for phase, commands in backend.daemon_commands().items():
        lines += [f"  daemon {phase}: {command}" for command in commands]
    return "\n".join(lines)


def launch(job: Job, progress: Callable[[str], None] = lambda line: None,
           tenant: dict[str, Any] | None = None, repeat: dict[str, Any] | None = None,
           task: dict[str, Any] | None = None) -> tuple[dict[str, Any], Path]:
    """Run `job` in a worker; return its result and run directory. `tenant` says which
    copy of a multi-tenant group this is (index, group id, start barrier), `repeat`
    which repetition (index, group id); `task` replaces the timed workload (parity)."""
    suffix = results.tenant_suffix(tenant) + (f"-r{repeat['index']}" if repeat else "")
    run_id, run_dir = job.new_run_dir(suffix)
    run_dir.mkdir(parents=True)
    job_json = job.to_json(run_id)
    job_json["tenant"] = tenant
    job_json["repeat"] = repeat
    job_json["run_dir"] = str(run_dir)
    job_json.update(task or {})
    job_json["spawned_at"] = time.time()
    job_path = run_dir / results.JOB_FILE
    job_path.write_text(json.dumps(job_json, indent=2))
    log_path = run_dir / results.LOG_FILE
    timeout_s = job.config.timeout_s
    timed_out = False

    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            worker_command(job_path, _ranks(job)),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=worker_env(job), cwd=REPO_ROOT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    proc.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        timed_out = True
                        _stop(proc)
                        break
                    progress(_last_line(log_path))
        finally:
            if proc.poll() is None:  # the parent is being interrupted: never leave a worker behind
                _stop(proc)

    result_path = run_dir / results.RESULT_FILE
    result = results.load(result_path) if result_path.exists() else None
    if timed_out:
        result = results.fail(result or results.new(job_json), "Timeout",
                              f"worker exceeded timeout_s={timeout_s:g} and was killed", _tail(log_path))
    elif result is None:
        code = proc.returncode
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (possibly the out-of-memory killer)" if name == "SIGKILL" else ""
            error, message = "WorkerKilled", f"worker killed by {name}{hint} before writing a result"
        else:
            error, message = "WorkerExited", f"worker exited with code {code} before writing a result"
        result = results.fail(results.new(job_json), error, message, _tail(log_path))
    result["worker_exit_code"] = proc.returncode
    results.write(result_path, result)
    return result, run_dir
