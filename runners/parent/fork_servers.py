"""Fork servers: one pre-warmed worker process per distinct start environment, which forks
each run's worker (runners/worker/fork_server.py), so a sweep imports torch and its model
libraries once instead of once per run. Isolation is what a fresh worker has: a process of
its own in its own session, started from a process whose whole environment (LD_PRELOAD,
library paths, the backend's variables) was in effect from its start, with no CUDA context.

A server is keyed by that environment, the framework and the model: runs that would start
differently never share one. Where a server cannot be used (it did not start, or refuses
to fork), the run starts a fresh worker, as always. Servers live as long as the command."""

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

from runners import REPO_ROOT

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
    def __init__(self, env: dict[str, str], model: str, size: Optional[str], timeout_s: float):
        self.folder = Path(tempfile.mkdtemp(prefix="vb-fork-"))  # short: a socket path has 107 bytes
        self.socket = str(self.folder / "s")
        self.log = self.folder / "server.log"
        self.in_flight = 0
        self.process: Optional[subprocess.Popen] = None
        try:
            with open(self.log, "ab") as out:
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "runners.worker.fork_server",
                        self.socket,
                        repr(time.time()),
                        model,
                        size or "",
                    ],
                    stdin=subprocess.PIPE,  # our end closed (or this process gone): the server ends
                    stdout=subprocess.PIPE,  # its ready line; then the server points it at its log
                    stderr=out,
                    env=env,
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

    def fork(self, request: dict, timeout_s: float) -> ForkedWorker | str:
        """The run's forked worker, or why the server could not give one."""
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.settimeout(min(READY_TIMEOUT_S, timeout_s))  # the server may import the model's libraries first
            connection.connect(self.socket)
            connection.sendall((json.dumps(request) + "\n").encode())
            reply, rest = _reply(connection)
            connection.settimeout(None)
        except (OSError, ValueError) as exc:
            connection.close()
            return f"the fork server did not answer: {exc}"
        if "refused" in reply:
            connection.close()
            return reply["refused"]
        self.in_flight += 1
        return ForkedWorker(reply["pid"], connection, rest, self._ended)

    def _ended(self) -> None:
        self.in_flight -= 1

    def close(self) -> None:
        if self.process is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class ForkServers:
    """The command's fork servers: one per start environment, framework and model (a forked
    worker's memory then holds what a fresh one of that model would import, and nothing of
    the models before it). A server no longer asked for is closed once its runs have ended."""

    def __init__(self) -> None:
        self._servers: dict[tuple, Optional[_Server]] = {}
        self._retired: list[_Server] = []
        self._lock = threading.Lock()
        atexit.register(self.close)

    def spawn(
        self, env: dict[str, str], per_run: dict[str, str], framework: str, request: dict, timeout_s: float
    ) -> ForkedWorker | None:
        """Fork the run's worker from the server of its start environment (`env` without the
        variables of this run alone, `per_run`, which the child sets); None: start it afresh."""
        start_env = {k: v for k, v in env.items() if k not in per_run}
        key = (tuple(sorted(start_env.items())), framework, request["model"], request.get("size"))
        with self._lock:
            self._retire_idle(key)
            if key not in self._servers:
                try:
                    self._servers[key] = _Server(start_env, request["model"], request.get("size"), timeout_s)
                except (OSError, ValueError) as exc:
                    self._servers[key] = None
                    self._note(str(exc))
            server = self._servers[key]
            if server is None:
                return None
            forked = server.fork({**request, "env": env}, timeout_s)
            if isinstance(forked, str):  # it will not get better: this key's runs start afresh from now on
                self._note(f"fork server not used: {forked}")
                self._retired.append(server)  # closed once its runs have ended: closing kills what it forked
                self._servers[key] = None
                return None
            return forked

    def _retire_idle(self, keep: tuple) -> None:
        """Close the servers of other models with no run in flight: a sweep goes model by model."""
        for key, server in list(self._servers.items()):
            if key != keep and server is not None and server.in_flight == 0:
                server.close()
                del self._servers[key]
        for server in [s for s in self._retired if s.in_flight == 0]:
            server.close()
            self._retired.remove(server)

    def _note(self, why: str) -> None:
        print(f"note: {why}; its runs start afresh (fork_server=false says so at once)", file=sys.stderr, flush=True)

    def close(self) -> None:
        with self._lock:
            for server in [*filter(None, self._servers.values()), *self._retired]:
                server.close()
            self._servers.clear()
            self._retired.clear()


servers = ForkServers()
