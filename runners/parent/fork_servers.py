"""Fork servers, in two levels (runners/worker/fork_server.py): a framework server per
distinct start environment and framework imports the worker and the framework once; from
it, a model server per set of libraries the models import (their entries' `libraries`:
torchvision's models, transformers' core, or none) imports them and forks each run's worker.
So a sweep imports torch once per command and each library once, while a forked worker's
memory holds only what its own model imports. Isolation is what a fresh
worker has: a process of its own in its own session, started from a process whose whole
environment (LD_PRELOAD, library paths, the backend's variables) was in effect from its
start, with no CUDA context.

Runs that would start differently never share a server. Where a server cannot be used (it
did not start, refuses to fork, or is gone), the run starts a fresh worker, as always."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import zoo
from runners import REPO_ROOT
from runners.parent.temp_folders import temporary_base

READY_TIMEOUT_S = 300.0  # imports on a cold, busy machine; a server that never answers is not used


class ForkedWorker:
    """A forked worker, waited on like a subprocess.Popen: `pid`, `wait(timeout)`, `returncode`.
    Its exit status comes from the fork server (its parent), on the run's connection."""

    def __init__(self, pid: int, connection: socket.socket, buffer: bytes, ended: Callable[[], None]):
        self.pid = pid
        self.returncode: Optional[int] = None
        self._connection = connection
        self._buffer = buffer  # what came after the pid line (a fast child's status may have)
        self._ended = ended

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            if b"\n" in self._buffer:
                self._end(os.waitstatus_to_exitcode(json.loads(self._buffer.partition(b"\n")[0])["status"]))
                break
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._connection], [], [], left)[0]:
                raise subprocess.TimeoutExpired(f"forked worker {self.pid}", timeout or 0.0)
            try:
                chunk = self._connection.recv(4096)
            except OSError:
                chunk = b""
            self._buffer += chunk
            if not chunk and b"\n" not in self._buffer:  # the server died first: the child must not outlive it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self._end(-signal.SIGKILL)
        return self.returncode

    def _end(self, code: int) -> None:
        self.returncode = code
        self._connection.close()
        self._ended()


def _reply(connection: socket.socket) -> tuple[dict, bytes]:
    """The server's first line on a run's connection, and whatever followed it."""
    answer = b""
    while b"\n" not in answer:
        chunk = connection.recv(4096)
        if not chunk:
            raise OSError("the fork server ended")
        answer += chunk
    line, _, rest = answer.partition(b"\n")
    return json.loads(line), rest


class _Server:
    """A fork server's socket: forks asked of it, and how many of them are still running."""

    def __init__(self, socket_path: str):
        self.socket = socket_path
        self.in_flight = 0
        self.usable = True  # until it refuses a fork or does not answer: that will not get better

    def fork(self, request: dict, timeout_s: float) -> ForkedWorker | str:
        """The forked child, or why the server could not give one."""
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.settimeout(min(READY_TIMEOUT_S, timeout_s))  # a model server imports its libraries first
            connection.connect(self.socket)
            connection.sendall((json.dumps(request) + "\n").encode())
            reply, rest = _reply(connection)
            connection.settimeout(None)
        except (OSError, ValueError) as exc:
            connection.close()
            self.usable = False
            return f"the fork server did not answer: {exc}"
        if "pid" not in reply:
            connection.close()
            self.usable = "refused" not in reply  # else its imports failed: the runs of its libraries start afresh
            return reply.get("refused") or reply.get("failed") or f"the model server ended as it started ({reply})"
        self.in_flight += 1
        return ForkedWorker(reply["pid"], connection, rest, self._ended)

    def _ended(self) -> None:
        self.in_flight -= 1


class _FrameworkServer(_Server):
    """`python -m runners.worker.fork_server`: the worker and the framework imported once, for
    one start environment; it forks the model servers. Closing it ends them too (they read
    its stdin), so it is closed only once it has none left."""

    def __init__(self, env: dict[str, str], framework: str, timeout_s: float):
        # Short: its sockets go in it, and it is the servers' TMPDIR (a socket path has 107 bytes)
        self.folder = Path(tempfile.mkdtemp(prefix="vb-fork-", dir=temporary_base()))
        super().__init__(str(self.folder / "s"))
        self.log = self.folder / "server.log"
        self.process: Optional[subprocess.Popen] = None
        self._models = 0
        try:
            with open(self.log, "ab") as out:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "runners.worker.fork_server", self.socket, repr(time.time()), framework],
                    stdin=subprocess.PIPE,  # our end closed (or this process gone): the servers end
                    stdout=subprocess.PIPE,  # its ready line; then the server points it at its log
                    stderr=out,
                    env={**env, "TMPDIR": str(self.folder)},  # what its imports leave (torch's caches) goes with it
                    cwd=REPO_ROOT,
                    start_new_session=True,  # Ctrl-C reaches the parent, which stops the runs, then us
                )
            ready = select.select([self.process.stdout], [], [], min(READY_TIMEOUT_S, timeout_s))[0]
            line = self.process.stdout.readline() if ready else b""
            if not line:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-1:]
                raise OSError(f"the fork server did not start: {tail[0] if tail else 'no answer'}")
            self.ready = json.loads(line)
        except BaseException:
            self.close()
            raise

    def model_server(self, model: str, size: Optional[str], timeout_s: float) -> _ModelServer | str:
        """A model server forked from this one with the libraries of `model`, or why there is none."""
        self._models += 1
        path = str(self.folder / f"m{self._models}")
        request = {"model": model, "size": size, "socket": path, "spawned_at": time.time()}
        forked = self.fork(request, timeout_s)
        return forked if isinstance(forked, str) else _ModelServer(path, forked)

    def close(self) -> None:
        if self.process is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)  # its model servers are in its group
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class _ModelServer(_Server):
    """A child of a framework server that imported a set of libraries; it forks the runs of
    the models that name them.
    `process` is it as its framework server sees it: its end comes on that connection."""

    def __init__(self, socket_path: str, process: ForkedWorker):
        super().__init__(socket_path)
        self.process = process

    def close(self) -> None:
        """Ask it to end (it ends once its runs have), and wait until it has."""
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(self.socket)
            connection.sendall(b'{"close": true}\n')
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


class ForkServers:
    """The command's fork servers: a framework server per start environment and framework,
    and under it a model server per set of libraries (a forked worker's memory then holds what
    a fresh one of its model would import, and nothing of the models before it). They are
    kept while the command asks for their start environment: a sweep goes model by model, and
    the models of one library come back (bert, dlrm, gpt2). Those of another start environment
    are closed once their runs have ended."""

    def __init__(self) -> None:
        self._frameworks: dict[tuple, Optional[_FrameworkServer]] = {}
        self._models: dict[tuple, Optional[_ModelServer]] = {}
        self._retired: list[_Server] = []  # model servers first: a framework server ends its own
        self._lock = threading.Lock()
        atexit.register(self.close)

    def spawn(
        self, env: dict[str, str], per_run: dict[str, str], framework: str, request: dict, timeout_s: float
    ) -> ForkedWorker | None:
        """Fork the run's worker from the model server of its start environment (`env` without
        the variables of this run alone, `per_run`, which the child sets); None: start it afresh."""
        start_env = {k: v for k, v in env.items() if k not in per_run}
        outer = (tuple(sorted(start_env.items())), framework)
        key = (*outer, zoo.get(request["model"]).libraries)
        with self._lock:
            self._retire_idle(key)
            if key not in self._models:
                self._models[key] = self._model_server(outer, start_env, request, timeout_s)
            server = self._models[key]
            if server is None:
                return None
            forked = server.fork({**request, "env": env}, timeout_s)
            if isinstance(forked, str):  # it will not get better: the runs of its libraries start afresh from now on
                self._note(f"fork server not used: {forked}")
                self._retire(server)
                self._models[key] = None
                return None
            return forked

    def _model_server(self, outer: tuple, start_env: dict[str, str], request: dict, timeout_s: float):
        """The model server for the libraries of the run's model, from its framework server
        (started here if need be); None: none."""
        if outer not in self._frameworks:
            try:
                self._frameworks[outer] = _FrameworkServer(start_env, outer[1], timeout_s)
            except (OSError, ValueError) as exc:
                self._frameworks[outer] = None
                self._note(str(exc))
        framework = self._frameworks[outer]
        if framework is None:
            return None
        server = framework.model_server(request["model"], request.get("size"), timeout_s)
        if isinstance(server, str):
            self._note(f"fork server not used: {server}")
            if not framework.usable:  # it would refuse every model alike
                self._retire(framework)
                self._frameworks[outer] = None
            return None
        return server

    def _retire(self, server: _Server) -> None:
        """Closed once its forks have ended: closing kills what it forked."""
        self._retired.append(server)

    def _retire_idle(self, keep: tuple) -> None:
        """Close the servers of other start environments with no run in flight (model servers
        first), and the retired ones whose runs have ended."""
        for key, server in list(self._models.items()):
            if key[0] != keep[0] and server is not None and server.in_flight == 0:
                server.close()
                del self._models[key]
        for key, server in list(self._frameworks.items()):
            if key[0] != keep[0] and server is not None and server.in_flight == 0:
                server.close()
                del self._frameworks[key]
        for server in [s for s in self._retired if s.in_flight == 0]:
            server.close()
            self._retired.remove(server)

    def _note(self, why: str) -> None:
        print(f"note: {why}; its runs start afresh (fork_server=false says so at once)", file=sys.stderr, flush=True)

    def close(self) -> None:
        """The command ends: closing the framework servers ends their model servers with them."""
        with self._lock:
            for server in [*self._frameworks.values(), *self._retired]:
                if isinstance(server, _FrameworkServer):
                    server.close()
            self._models.clear()
            self._frameworks.clear()
            self._retired.clear()


servers = ForkServers()
