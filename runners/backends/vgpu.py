"""API-remoting vGPU (GPU pooling), as documented for Orion vGPU: a client runtime that
replaces the CUDA runtime library and forwards every CUDA call to a GPU server. The
client directory goes first in LD_LIBRARY_PATH (applications must load libcudart
dynamically); ORION_* variables select the vGPUs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from runners.backends import Backend, UsageError, backends, prepend_path
from runners.config import BackendConfig, _check


@dataclass
class VgpuConfig(BackendConfig):
    client_dir: str = "/usr/lib/orion"  # holds the client's libcudart.so*
    vgpus: int = 1  # ORION_VGPU: vGPUs per process
    gmem_mib: Optional[int] = None  # ORION_GMEM: device memory per vGPU (MiB); None: the server's default
    controller: Optional[str] = None  # ORION_CONTROLLER host:port (9123 by default on the controller side)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.vgpus >= 1, f"backend.vgpus must be >= 1, got {self.vgpus}")
        _check(self.gmem_mib is None or self.gmem_mib >= 1, f"backend.gmem_mib must be >= 1, got {self.gmem_mib}")
        _check(
            self.controller is None or re.fullmatch(r"[\w.\-\[\]:]+:\d+", self.controller) is not None,
            f"backend.controller must be host:port, got {self.controller!r}",
        )


@backends.register
class VgpuBackend(Backend):
    name = "vgpu"
    device = "cuda"
    summary = "API-remoting vGPU client (Orion-style)"
    config_class = VgpuConfig

    def _runtimes(self) -> list[Path]:
        return sorted(Path(self.config.client_dir).glob("libcudart.so*"))

    def preflight(self):
        if not self._runtimes():
            raise UsageError(
                f"backend 'vgpu' needs the vGPU client runtime, but {self.config.client_dir} holds no libcudart.so*; "
                f"install the client there or point to it with backend.client_dir=<dir>"
            )

    def environment(self):
        env = {
            "LD_LIBRARY_PATH": prepend_path("LD_LIBRARY_PATH", self.config.client_dir),
            "ORION_VGPU": str(self.config.vgpus),
        }
        if self.config.gmem_mib:
            env["ORION_GMEM"] = str(self.config.gmem_mib)
        if self.config.controller:
            env["ORION_CONTROLLER"] = self.config.controller
        return {**env, **super().environment()}

    def version(self):
        """The client runtime's file name carries the CUDA runtime version it implements;
        a VERSION file next to it, where the product ships one, says the client's own."""
        version_file = Path(self.config.client_dir) / "VERSION"
        if version_file.is_file():
            return version_file.read_text().strip()[:100]
        runtimes = self._runtimes()
        return runtimes[-1].name if runtimes else None

    def memory_quota_mb(self):
        return float(self.config.gmem_mib) if self.config.gmem_mib else None
