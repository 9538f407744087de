"""Pre-warmed workers, in two levels: `python -m runners.worker.fork_server <socket> <time> <framework>`.

Started by the parent with a run's whole start environment (LD_PRELOAD, LD_LIBRARY_PATH,
the backend's variables, thread settings: everything a fresh worker would start with), a
*framework server* imports the worker and the framework (torch; Keras and TensorFlow) once.
It never runs a workload: on request it forks a *model server*, which imports the libraries a
model builds with (`warm`: its entry's `libraries`, such as torchvision's models or
transformers' core) and then forks one child per run of any model that names the same. Each child is a worker
as `python -m runners.worker` would be: its own process and session, its own variables, its
log; CUDA is never initialized here, so each child creates its own context. A run's memory
holds the framework and the libraries its own model imports, nothing of the models before it
(what is its model's alone, such as transformers' BERT classes, it imports itself).

Forking is only safe in a process with one thread and no CUDA context: before each fork
(of a model server or of a run) that is checked, and a request is refused (the parent then
starts a fresh worker) when it does not hold. Every server ends when the parent closes its
stdin (or dies); a model server also when asked to close or sent SIGTERM (it is when its
framework server dies), once the runs it forked have ended.

Protocol, one connection per fork, the same at both levels: the parent sends one JSON line;
the server answers {"refused": why}, or the forked child answers {"pid": N} (a model server
with what its runs inherit, once its imports are done; {"failed": why} if they fail), then
the server sends {"status": S} when the child has ended (S as os.waitpid gives it).
To a framework server: {model, size, socket, spawned_at}; to a model server: {job, env,
cwd, log, model, size} for a run, or {close: true}."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import select
import signal
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import runners.worker.main as worker_main  # what every child runs, imported once here
from runners.worker.fingerprint import gpu_library, mapped_files
from runners.worker.startup import FORKED_VARIABLE

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends
_closing = False  # a model server asked to end: it takes no more runs, and ends once its runs have


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
    # a fork they are gone, until a library loaded since starts its own: each pool runs or not.
    # Any other count is a thread nothing accounts for.
    others = threads() - 1 - _named_threads("jemalloc_bg_thd")
    possible = {0}
    for pool in _openblas_pool_threads():
        possible |= {n + pool for n in possible}
    if others not in possible:
        return f"the fork server runs {others} thread(s) it cannot account for (a fork would copy their locks)"
    return None


def _named_threads(name: str) -> int:
    return sum(Path(f"/proc/self/task/{t}/comm").read_text().strip() == name for t in os.listdir("/proc/self/task"))


def _openblas_pool_threads() -> list[int]:
    """The threads each of OpenBLAS's pthreads pools runs once started (its size less the caller)."""
    from threadpoolctl import threadpool_info

    return [
        max(0, pool["num_threads"] - 1)
        for pool in threadpool_info()
        if pool["internal_api"] == "openblas" and pool.get("threading_layer") == "pthreads"
    ]


def import_framework(framework: str) -> None:
    """What every worker of `framework` imports: the framework server's share."""
    import zoo  # noqa: F401

    if framework == "pytorch":
        import torch  # noqa: F401
    if framework == "tensorflow":
        import keras  # noqa: F401  (and TensorFlow)


def warm(model: str, size: str | None) -> tuple[float, tuple[str, ...]]:
    """Import the libraries `model` shares with the models that name the same: the seconds it
    took, and their names."""
    started = time.perf_counter()
    import zoo

    entry = zoo.get(model)(size)
    entry.import_libraries()
    return time.perf_counter() - started, entry.libraries


def packages() -> list[str]:
    """The packages this process imported, besides Python's own: what a forked run inherits."""
    top = {name.partition(".")[0] for name in sys.modules if not name.startswith("_")}
    return sorted(top - set(sys.stdlib_module_names))


def run(request: dict, inherited: dict, listener: socket.socket, connection: socket.socket, others: list) -> None:
    """In a child of a model server: say its pid, then become the run's worker."""
    with contextlib.suppress(OSError):  # the parent is gone: the worker still records its run
        _send(connection, {"pid": os.getpid()})
    child(request, inherited, listener, [*others, connection])


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
        tempfile.tempdir = None  # the run's own TMPDIR, not the one a server's import may have cached
        os.chdir(request["cwd"])
        sys.argv = [worker_main.__file__, request["job"]]
        random.seed()  # a fresh process seeds itself from the OS; a fork would repeat its siblings' draws
        code = worker_main.main([request["job"]])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001  (the worker records its own failures; this is what it could not)
        traceback.print_exc()
    finally:
        worker_main.leave(code)  # as a fresh worker ends


def model_server(
    request: dict, inherited: dict, listener: socket.socket, connection: socket.socket, others: list
) -> None:
    """In a child of the framework server: import a model's libraries, then serve the runs of
    every model that names the same."""
    code = 1
    try:
        listener.close()
        for other in others:
            other.close()
        signal.signal(signal.SIGTERM, _close)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # the framework server dies
        if os.getppid() != inherited["framework_server_pid"]:  # it died before prctl
            _close()
        try:
            model_import_s, libraries = warm(request["model"], request.get("size"))
        except Exception as exc:  # noqa: BLE001  (a fresh worker will record it as the run's failure)
            _send(
                connection, {"failed": f"importing {request['model']}'s libraries failed: {type(exc).__name__}: {exc}"}
            )
            return
        own = {
            "server_pid": os.getpid(),
            "server_spawned_at": request["spawned_at"],
            "server_ready_s": time.time() - request["spawned_at"],
            "model_import_s": model_import_s,
            "libraries": list(libraries),
        }
        serve(request["socket"], {**inherited, **own}, run, connection)
        code = 0
    except BaseException:  # noqa: BLE001  (never back into the framework server's loop)
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _close(*_) -> None:
    global _closing
    _closing = True


def _send(connection: socket.socket, message: dict) -> None:
    """One line of the protocol (the module's docstring) to the parent."""
    connection.sendall((json.dumps(message) + "\n").encode())


def serve(path: str, inherited: dict, fork: Callable, announce: socket.socket | None = None) -> None:
    """Fork `fork(request, inherited, listener, connection, other connections)` per request on
    `path`, until stdin closes (or, for a model server, it is closed and its runs have ended).
    Ready is said on `announce` (a model server's request), else on stdout."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    if announce is None:
        print(json.dumps({"ready": True, **inherited}), flush=True)
        os.dup2(2, 1)  # nobody reads the ready pipe again: whatever is printed from now on goes to the log
    else:
        _send(announce, {"pid": os.getpid(), **inherited})
        announce.close()  # the framework server's copy says when we end
    waiting: dict[int, socket.socket] = {}  # child pid -> the connection that asked for it
    runs = 0
    # Asleep until something happens (a request, a child's end, the parent leaving): a server
    # that polled would wake up beside the runs it forked, inside their measured steps.
    child_ended, wake_up = os.pipe()
    os.set_blocking(wake_up, False)
    signal.set_wakeup_fd(wake_up)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    try:
        while not (_closing and not waiting):
            if _closing and listener.fileno() != -1:
                listener.close()  # no more runs: the parent starts them afresh
                with contextlib.suppress(OSError):
                    os.unlink(path)
            watched = [sys.stdin, child_ended] + ([] if _closing else [listener])
            readable, _, _ = select.select(watched, [], [])
            if child_ended in readable:
                os.read(child_ended, 4096)
            if sys.stdin in readable and not os.read(sys.stdin.fileno(), 4096):
                return  # the parent closed our stdin, or is gone
            if listener in readable:
                connection, _ = listener.accept()
                with connection.makefile("r") as lines:
                    request = json.loads(lines.readline())
                if request.get("close"):
                    _close()
                    connection.close()
                    continue
                if why := unforkable():
                    _send(connection, {"refused": why})
                    connection.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                rss_mb = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
                extra = {"runs_before": runs, "server_rss_mb": rss_mb, "packages": packages()}
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    os.close(child_ended)
                    os.close(wake_up)
                    fork(request, {**inherited, **extra}, listener, connection, list(waiting.values()))
                runs += 1
                waiting[pid] = connection
            while waiting:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                if connection := waiting.pop(pid, None):
                    with contextlib.suppress(OSError):
                        _send(connection, {"status": status})
                    connection.close()
    finally:
        # The parent is gone: nobody will wait for these. A run is a session of its own, killed
        # here; a model server is not (killpg finds no such group): it ends on the same stdin,
        # or, once told, when its runs have.
        for pid in waiting:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in waiting:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


def main(argv: list[str]) -> None:
    """argv: socket path, the parent's time.time() when it spawned us, the framework."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the runs, then us
    path, spawned_at, framework = argv[0], float(argv[1]), argv[2]
    started = time.perf_counter()
    import_framework(framework)
    own = {
        "framework_server_pid": os.getpid(),
        "framework_server_spawned_at": spawned_at,
        "framework_server_ready_s": time.time() - spawned_at,
        "framework_import_s": time.perf_counter() - started,
        "framework_server_temp_dir": tempfile.gettempdir(),  # its folder, removed with it
    }
    serve(path, own, model_server)


if __name__ == "__main__":
    main(sys.argv[1:])
