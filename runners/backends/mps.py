"""NVIDIA MPS: one control daemon per GPU; workers become its clients through a shared
pipe directory. The suite starts a daemon of its own (pipes and logs under results/),
always stops it with `quit`, and refuses to run beside a daemon it did not start."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from runners.backends import Backend, UsageError, backends
from runners.config import BackendConfig, _check, parse_size_mib

MPS_PROGRAMS = ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server")


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

    @property
    def pipe_dir(self) -> Path:
        return self.state_dir / "pipe"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    def _daemon_env(self) -> dict[str, str]:
        return {"CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir)}

    def _control(self) -> Optional[str]:
        return shutil.which(self.config.control)

    def preflight(self):
        if not self._control():
            raise UsageError(
                f"backend 'mps' needs {self.config.control} (NVIDIA driver utilities) on PATH, "
                f"but it is not there; install the driver utilities or set backend.control=<path>"
            )
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
        control = self._control()
        env = {**os.environ, **self._daemon_env()}
        self.pipe_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = subprocess.run([control, "-d"], env=env, capture_output=True, text=True, timeout=60)
        if started.returncode != 0:
            raise UsageError(
                f"could not start the MPS daemon ({control} -d exited {started.returncode}: "
                f"{(started.stderr or started.stdout).strip()[:300]}); see {self.log_dir}"
            )
        try:
            yield
        finally:
            subprocess.run([control], input="quit\n", env=env, capture_output=True, text=True, timeout=60)

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
