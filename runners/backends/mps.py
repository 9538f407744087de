"""NVIDIA MPS: one control daemon per GPU; workers become its clients through a shared
pipe directory. The suite starts a daemon of its own, always stops it with `quit` and
waits until it is gone, and refuses to run beside a daemon it did not start. A client
that cannot reach the daemon runs without MPS, silently: each worker asks the daemon
whether it is among its clients.

The daemon's pipes are Unix sockets, and a socket path holds at most 107 bytes: under a
checkout's results folder they did not fit (`-d` exited 1 with no message). So the pipes
go in a short per-run folder under $XDG_RUNTIME_DIR or the temporary folder, removed when
the session ends; the logs stay under results/backends/mps/<host>-<pid>-<id>/log, so hosts
sharing a results folder never meet."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from runners.backends import Backend, Check, UsageError, backends, instance_name
from runners.backends.local import device_used
from runners.config import BackendConfig, _check, parse_size_mib

MPS_PROGRAMS = ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server")
STOP_WAIT_S = 10.0  # `quit` returns before the server has exited
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the closing NUL
LONGEST_SOCKET = "control_privileged"  # the longest name the daemon creates in its pipe folder
LOG_LINES = 5  # of the daemon's control.log in the error when it does not start


@dataclass
class MpsConfig(BackendConfig):
    sm_percent: Optional[int] = None  # CUDA_MPS_ACTIVE_THREAD_PERCENTAGE for each worker
    memory_limit: Optional[str] = None  # CUDA_MPS_PINNED_DEVICE_MEM_LIMIT: "4G" (device 0) or "0=4G,1=2G"
    control: str = "nvidia-cuda-mps-control"  # the control program (a path, or a name on PATH)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            self.sm_percent is None or 1 <= self.sm_percent <= 100,
            f"backend.sm_percent must be a percentage in 1..100, got {self.sm_percent}",
        )
        if self.memory_limit is not None:
            for part in self.memory_limit.split(","):
                parse_size_mib(part.split("=")[-1], "backend.memory_limit")


def runtime_base() -> Path:
    """Where per-run pipe folders go: $XDG_RUNTIME_DIR when it is a folder (short, private,
    per user), else the temporary folder."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return Path(runtime) if runtime and os.path.isdir(runtime) else Path(tempfile.gettempdir())


def running_mps_daemons() -> list[tuple[int, str]]:
    """(pid, its pipe directory) of every MPS control or server process on this machine."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if os.path.basename(argv0) in MPS_PROGRAMS:
            pipe = "/tmp/nvidia-mps (default)"
            with contextlib.suppress(OSError):
                for item in (proc / "environ").read_bytes().split(b"\0"):
                    if item.startswith(b"CUDA_MPS_PIPE_DIRECTORY="):
                        pipe = item.split(b"=", 1)[1].decode(errors="replace")
            found.append((int(proc.name), pipe))
    return found


@backends.register
class MpsBackend(Backend):
    name = "mps"
    device = "cuda"
    summary = "NVIDIA Multi-Process Service"
    config_class = MpsConfig

    def __init__(self, config, state_dir, requested=None):
        super().__init__(config, state_dir, requested)
        token = secrets.token_hex(3)
        self.instance = instance_name(token)
        self.pipe_dir = runtime_base() / f"vb-mps-{os.getpid()}-{token}"  # created by session()

    def _check_socket_path(self) -> None:
        longest = self.pipe_dir / LONGEST_SOCKET
        size = len(os.fsencode(str(longest)))
        if size > SOCKET_PATH_MAX:
            raise UsageError(
                f"the MPS daemon's socket {longest} would be {size} bytes, over the {SOCKET_PATH_MAX} a Unix "
                f"socket path holds; point XDG_RUNTIME_DIR (or TMPDIR) at a short folder such as /tmp"
            )

    @property
    def log_dir(self) -> Path:
        return self.state_dir / self.instance / "log"

    def _daemon_env(self) -> dict[str, str]:
        return {"CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir)}

    def _control(self) -> Optional[str]:
        return shutil.which(self.config.control)

    def _require_control(self) -> str:
        control = self._control()
        if not control:
            raise UsageError(
                f"backend 'mps' needs {self.config.control} (NVIDIA driver utilities) on PATH, "
                f"but it is not there; install the driver utilities or set backend.control=<path>"
            )
        return control

    def preflight(self):
        self._check_socket_path()
        self._require_control()
        foreign = running_mps_daemons()
        if foreign:
            pid, pipe = foreign[0]
            raise UsageError(
                f"an MPS daemon the suite did not start already runs (pid {pid}, pipes in {pipe}); "
                f"stop it with `echo quit | CUDA_MPS_PIPE_DIRECTORY={pipe.split(' ')[0]} "
                f"nvidia-cuda-mps-control` or use backend=native"
            )

    def environment(self):
        env = self._daemon_env()
        if self.config.sm_percent:
            env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(self.config.sm_percent)
        if self.config.memory_limit:
            limit = self.config.memory_limit
            env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = limit if "=" in limit else f"0={limit}"
        return {**env, **super().environment()}

    def daemon_commands(self):
        control = self._control() or self.config.control
        prefix = " ".join(f"{k}={v}" for k, v in self._daemon_env().items())
        return {"start": [f"{prefix} {control} -d"], "stop": [f"echo quit | {prefix} {control}"]}

    @contextlib.contextmanager
    def session(self):
        control = self._require_control()  # also where a command skips preflight (parity's dry run)
        env = {**os.environ, **self._daemon_env()}
        self._check_socket_path()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pipe_dir.mkdir(mode=0o700, parents=True)
        try:
            started = subprocess.run([control, "-d"], env=env, capture_output=True, text=True, timeout=60)
            if started.returncode != 0:
                said = (started.stderr or started.stdout).strip()[:300] or "no message"
                raise UsageError(
                    f"could not start the MPS daemon ({control} -d exited {started.returncode}: {said}); "
                    f"its log: {self._log_tail() or 'empty'}; see {self.log_dir}"
                )
            try:
                yield
            finally:
                subprocess.run([control], input="quit\n", env=env, capture_output=True, text=True, timeout=60)
                deadline = time.monotonic() + STOP_WAIT_S
                while (
                    any(pipe == str(self.pipe_dir) for _, pipe in running_mps_daemons()) and time.monotonic() < deadline
                ):
                    time.sleep(0.1)
        finally:
            shutil.rmtree(self.pipe_dir, ignore_errors=True)

    def _log_tail(self) -> str:
        """The daemon's last control.log lines, joined: why it did not start, in its own words."""
        try:
            lines = (self.log_dir / "control.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in lines[-LOG_LINES:] if line.strip())[:600]

    def clients(self, env: dict[str, str]) -> tuple[list[int], str]:
        """The daemon's clients (pids over every server), asked through its control program."""
        control, run = self._control(), {**env, "CUDA_MPS_PIPE_DIRECTORY": env.get("CUDA_MPS_PIPE_DIRECTORY", "")}
        if not control:
            return [], f"{self.config.control} not found"

        def ask(command: str) -> list[int]:
            done = subprocess.run([control], input=command + "\n", env=run, capture_output=True, text=True, timeout=30)
            return [int(word) for word in done.stdout.split() if word.isdigit()]

        servers = ask("get_server_list")
        return [pid for server in servers for pid in ask(f"get_client_list {server}")], f"servers {servers}"

    def engagement(self, seen):
        clients, how = self.clients(seen.env)
        attached = seen.pid in clients
        return [
            *super().engagement(seen),
            device_used(seen),
            Check(
                "mps_client",
                attached,
                f"pid {seen.pid} {'is' if attached else 'is not'} among the daemon's clients {clients} ({how})",
            ),
        ]

    def version(self):
        from runners.nvml import visible_gpus

        gpus, _ = visible_gpus()
        return f"driver {gpus[0]['driver_version']}" if gpus else None

    def memory_quota_mb(self):
        if not self.config.memory_limit:
            return None
        for part in self.config.memory_limit.split(","):
            device, _, size = part.rpartition("=")
            if device in ("", "0"):
                return float(parse_size_mib(size, "backend.memory_limit"))
        return None

    def compute_share(self):
        return float(self.config.sm_percent) if self.config.sm_percent else None
