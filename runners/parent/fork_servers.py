"""Fork servers: one pre-warmed worker process per distinct start environment, which forks
each run's worker (runners/worker/fork_server.py), so a sweep imports torch and its model
libraries once instead of once per run. Isolation is what a fresh worker has: a process of
its own in its own session, started from a process whose whole environment (LD_PRELOAD,
library paths, the backend's variables) was in effect from its start, with no CUDA context.

A server is keyed by that environment and the model's framework: runs that would start
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
from typing import Optional

from runners import REPO_ROOT

READY_TIMEOUT_S = 300.0  # imports on a cold, busy machine; a server that never answers is not used


class ForkedWorker:
    """A forked worker, waited on like a subprocess.Popen: `pid`, `wait(timeout)`, `returncode`.
    Its exit status comes from the fork server (its parent), on the run's connection."""

    def __init__(self, pid: int, connection: socket.socket):
        self.pid = pid
        self.returncode: Optional[int] = None
        self._connection = connection
        self._buffer = b""

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._connection], [], [], left)[0]:
                raise subprocess.TimeoutExpired(f"forked worker {self.pid}", timeout or 0.0)
            chunk = self._connection.recv(4096)
            self._buffer += chunk
            if b"\n" in self._buffer:
                self.returncode = os.waitstatus_to_exitcode(json.loads(self._buffer.split(b"\n")[0])["status"])
            elif not chunk:  # the server died before its child: make sure the child is gone too
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.returncode = -signal.SIGKILL
        self._connection.close()
        return self.returncode


class _Server:
    def __init__(self, env: dict[str, str], model: str, size: Optional[str]):
        self.folder = Path(tempfile.mkdtemp(prefix="vb-fork-"))  # short: a socket path has 107 bytes
        self.socket = str(self.folder / "s")
        self.log = self.folder / "server.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runners.worker.fork_server", self.socket, repr(time.time()), model, size or ""],
                stdin=subprocess.PIPE,  # our end closed (or this process gone): the server ends
                stdout=subprocess.PIPE,
                stderr=out,
                env=env,
                cwd=REPO_ROOT,
                start_new_session=True,  # Ctrl-C reaches the parent, which stops the runs, then us
            )
        ready = select.select([self.process.stdout], [], [], READY_TIMEOUT_S)[0]
        line = self.process.stdout.readline() if ready else b""
        if not line:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] if self.log.exists() else []
            self.close()
            raise OSError(f"the fork server did not start: {tail[0] if tail else 'no output'}")
        self.ready = json.loads(line)

    def fork(self, request: dict) -> ForkedWorker | str:
        """The run's forked worker, or why the server refused it."""
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(self.socket)
        connection.sendall((json.dumps(request) + "\n").encode())
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = connection.recv(4096)
            if not chunk:
                connection.close()
                return "the fork server ended"
            answer += chunk
        reply = json.loads(answer)
        if "refused" in reply:
            connection.close()
            return reply["refused"]
        return ForkedWorker(reply["pid"], connection)

    def close(self) -> None:
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
    """The command's fork servers, by start environment and framework."""

    def __init__(self) -> None:
        self._servers: dict[tuple, Optional[_Server]] = {}
        self._lock = threading.Lock()
        self.notes: list[str] = []  # why a server was not used, once per server
        atexit.register(self.close)

    def spawn(self, env: dict[str, str], per_run: dict[str, str], framework: str, request: dict) -> ForkedWorker | None:
        """Fork the run's worker from the server of its start environment (`env` without the
        variables of this run alone, `per_run`, which the child sets); None: start it afresh."""
        start_env = {k: v for k, v in env.items() if k not in per_run}
        key = (tuple(sorted(start_env.items())), framework)
        with self._lock:
            if key not in self._servers:
                try:
                    self._servers[key] = _Server(start_env, request["model"], request.get("size"))
                except OSError as exc:
                    self._servers[key] = None
                    self._note(str(exc))
            server = self._servers[key]
            if server is None:
                return None
            forked = server.fork({**request, "env": env})
            if isinstance(forked, str):  # it will not get better: stop it, start this server's runs afresh
                self._note(f"fork server not used: {forked}")
                server.close()
                self._servers[key] = None
                return None
            return forked

    def _note(self, why: str) -> None:
        self.notes.append(why)
        print(f"note: {why}; its runs start afresh (fork_server=false says so at once)", file=sys.stderr, flush=True)

    def close(self) -> None:
        with self._lock:
            for server in filter(None, self._servers.values()):
                server.close()
            self._servers.clear()


servers = ForkServers()
