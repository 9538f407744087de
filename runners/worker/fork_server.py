"""A pre-warmed worker: `python -m runners.worker.fork_server <socket> <framework>`.

Started by the parent with a run's whole start environment (LD_PRELOAD, LD_LIBRARY_PATH,
the backend's variables, thread settings: everything a fresh worker would start with), it
imports the worker and the framework once, then forks one child per run. Each child is a
worker as `python -m runners.worker` would be: its own process and session, its own
variables, its log; CUDA is never initialized here, so each child creates its own context.

Forking is only safe in a process with one thread and no CUDA context: before each fork
that is checked, and a request is refused (the parent then starts a fresh worker) when it
does not hold. The server ends when the parent closes its stdin (or dies).

Protocol, one connection per run: the parent sends one JSON line (job, env, cwd, log,
model, size); the server answers {"pid": N} (or {"refused": why}), then {"status": S} when
the child has ended (S as os.waitpid gives it)."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import select
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

import runners.worker.main as worker_main  # what every child runs, imported once here
from runners.worker.fingerprint import gpu_library, mapped_files
from runners.worker.startup import FORKED_VARIABLE

_warm: dict[tuple[str, str | None], float] = {}  # (model, size) -> seconds its imports took here


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def unforkable() -> str | None:
    """Why this process must not fork now, or None."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA was initialized in the fork server"
    # Loaded means likely initialized (torch.cuda.is_available() calls cuInit), and a child of a
    # process that initialized the driver cannot use it. NVML's handles would be shared too.
    driver = [p for p in mapped_files() if gpu_library(p) in ("libcuda", "libnvidia-ml")]
    if driver:
        name = os.path.basename(driver[0])
        return f"the fork server loaded {name} during its imports (a forked child could not use the driver)"
    # Threads whose library makes a fork safe: jemalloc's background thread (TensorFlow's import
    # starts one) is handled by jemalloc's own fork handlers; OpenBLAS's pools (numpy's and
    # scipy's copies start one at import) are joined by their pthread_atfork handler, so after
    # the first fork they are gone. Any other count is a thread nothing accounts for.
    others = threads() - 1 - _named_threads("jemalloc_bg_thd")
    if others not in (0, _openblas_pool_threads()):
        return f"the fork server runs {others} thread(s) it cannot account for (a fork would copy their locks)"
    return None


def _named_threads(name: str) -> int:
    return sum(Path(f"/proc/self/task/{t}/comm").read_text().strip() == name for t in os.listdir("/proc/self/task"))


def _openblas_pool_threads() -> int:
    """The threads OpenBLAS's pthreads pools run once started (each: its size less the caller)."""
    from threadpoolctl import threadpool_info

    return sum(
        max(0, pool["num_threads"] - 1)
        for pool in threadpool_info()
        if pool["internal_api"] == "openblas" and pool.get("threading_layer") == "pthreads"
    )


def warm(model: str, size: str | None) -> float:
    """Import what `model` builds with (its framework's modules), once per model and size."""
    if (model, size) not in _warm:
        started = time.perf_counter()
        import zoo

        entry = zoo.get(model)(size)
        if entry.framework == "pytorch":
            import torch  # noqa: F401
        if entry.framework == "tensorflow":
            import keras  # noqa: F401  (and TensorFlow)
        if hasattr(entry, "import_framework"):  # the libraries its build() uses besides the framework
            entry.import_framework()
        _warm[(model, size)] = time.perf_counter() - started
    return _warm[(model, size)]


def child(request: dict, inherited: dict, listener: socket.socket, open_connections: list[socket.socket]) -> None:
    """In the forked child: become the run's worker, then leave without returning."""
    code = 1
    try:
        listener.close()
        for connection in open_connections:
            connection.close()
        os.setsid()  # its own session, as start_new_session gives a fresh worker: the parent stops its group
        for sig in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # Python ignores it at start (EPIPE, not death)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.environ.clear()  # putenv/unsetenv: the C libraries see the run's own variables
        os.environ.update(request["env"])
        os.environ[FORKED_VARIABLE] = json.dumps(inherited)
        os.chdir(request["cwd"])
        sys.argv = [worker_main.__file__, request["job"]]
        random.seed()  # a fresh process seeds itself from the OS; a fork would repeat its siblings' draws
        code = worker_main.main([request["job"]])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001  (the worker records its own failures; this is what it could not)
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()  # as an interpreter's exit would: multiprocessing ends its children
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _send(connection: socket.socket, message: dict) -> None:
    """One line of the protocol (the module's docstring) to the parent."""
    connection.sendall((json.dumps(message) + "\n").encode())


def serve(path: str, inherited: dict) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print(json.dumps({"ready": True, **inherited}), flush=True)
    os.dup2(2, 1)  # nobody reads the ready pipe again: whatever is printed from now on goes to the log
    waiting: dict[int, socket.socket] = {}  # child pid -> the connection that asked for it
    runs = 0
    # Asleep until something happens (a request, a child's end, the parent leaving): a server
    # that polled would wake up beside the runs it forked, inside their measured steps.
    child_ended, wake_up = os.pipe()
    os.set_blocking(wake_up, False)
    signal.set_wakeup_fd(wake_up)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    try:
        while True:
            readable, _, _ = select.select([listener, sys.stdin, child_ended], [], [])
            if child_ended in readable:
                os.read(child_ended, 4096)
            if sys.stdin in readable and not os.read(sys.stdin.fileno(), 4096):
                return  # the parent closed our stdin, or is gone
            if listener in readable:
                connection, _ = listener.accept()
                with connection.makefile("r") as lines:
                    request = json.loads(lines.readline())
                try:
                    warm_s = warm(request["model"], request.get("size"))
                    why = unforkable()
                except Exception as exc:  # noqa: BLE001  (a fresh worker will record it as the run's failure)
                    warm_s, why = 0.0, f"importing {request['model']}'s libraries failed: {type(exc).__name__}: {exc}"
                if why:
                    _send(connection, {"refused": why})
                    connection.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                rss_mb = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    os.close(child_ended)
                    os.close(wake_up)
                    child(
                        request,
                        {**inherited, "model_import_s": warm_s, "runs_before": runs, "server_rss_mb": rss_mb},
                        listener,
                        list(waiting.values()) + [connection],
                    )
                runs += 1
                waiting[pid] = connection
                _send(connection, {"pid": pid})
            while waiting:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                if connection := waiting.pop(pid, None):
                    with contextlib.suppress(OSError):
                        _send(connection, {"status": status})
                    connection.close()
    finally:
        for pid in waiting:  # the parent is gone: nobody will wait for these runs
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


def main(argv: list[str]) -> None:
    """argv: socket path, the parent's time.time() when it spawned us, a model and its size."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the runs, then us
    path, spawned_at, model, size = argv[0], float(argv[1]), argv[2], argv[3] or None
    warm(model, size)
    serve(
        path, {"server_pid": os.getpid(), "server_spawned_at": spawned_at, "server_ready_s": time.time() - spawned_at}
    )


if __name__ == "__main__":
    main(sys.argv[1:])
