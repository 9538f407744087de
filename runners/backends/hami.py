"""HAMi-core: CUDA and NVML interception by a preloaded library (libvgpu.so). Memory
over the quota fails with out-of-memory, cuMemGetInfo and NVML report the quota, and
compute is limited by a token bucket charged per kernel launch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from runners.backends import Backend, UsageError, backends
from runners.config import BackendConfig, _check, parse_size_mib


@dataclass
class HamiConfig(BackendConfig):
    library: str = "/usr/local/vgpu/libvgpu.so"  # HAMi-core's libvgpu.so (LD_PRELOAD)
    memory_limit: Optional[str] = None  # CUDA_DEVICE_MEMORY_LIMIT, e.g. 4g or 4096m
    sm_limit: Optional[int] = None  # CUDA_DEVICE_SM_LIMIT, percent of the SMs

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.memory_limit is not None:
            parse_size_mib(self.memory_limit, "backend.memory_limit")
        _check(
            self.sm_limit is None or 1 <= self.sm_limit <= 100,
            f"backend.sm_limit must be a percentage in 1..100, got {self.sm_limit}",
        )


@backends.register
class HamiBackend(Backend):
    name = "hami"
    device = "cuda"
    summary = "HAMi-core interception (LD_PRELOAD libvgpu.so)"
    config_class = HamiConfig

    def preflight(self):
        if not Path(self.config.library).is_file():
            raise UsageError(
                f"backend 'hami' needs HAMi-core's library, but {self.config.library} does not exist; "
                f"build libvgpu.so from HAMi-core and set backend.library=<path>"
            )

    def environment(self):
        import os

        preload = " ".join(filter(None, [self.config.library, os.environ.get("LD_PRELOAD", "")]))
        env = {"LD_PRELOAD": preload}
        if self.config.memory_limit:
            env["CUDA_DEVICE_MEMORY_LIMIT"] = self.config.memory_limit
        if self.config.sm_limit:
            env["CUDA_DEVICE_SM_LIMIT"] = str(self.config.sm_limit)
        return {**env, **super().environment()}

    def version(self):
        return Path(self.config.library).resolve().name if Path(self.config.library).exists() else None

    def memory_quota_mb(self):
        return (
            float(parse_size_mib(self.config.memory_limit, "backend.memory_limit"))
            if self.config.memory_limit
            else None
        )

    def compute_share(self):
        return float(self.config.sm_limit) if self.config.sm_limit else None
