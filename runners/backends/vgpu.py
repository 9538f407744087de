"""API-remoting vGPU (GPU pooling), as documented for Orion vGPU: a client runtime that
replaces the CUDA runtime library and forwards every CUDA call to a GPU server. The
client directory goes first in LD_LIBRARY_PATH (applications must load libcudart
dynamically); ORION_* variables select the vGPUs. A framework built for a newer CUDA
than the client implements loads its own bundled runtime instead and runs natively,
silently: planning refuses that pairing, and the worker checks that the runtime it
mapped is the client's."""

from __future__ import annotations

import importlib.metadata
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from runners.backends import Backend, Check, UsageError, backends, prepend_path
from runners.backends.local import device_used, total_is
from runners.config import BackendConfig, _check

_VERSION = re.compile(r"libcudart\.so\.(\d+)(?:\.(\d+))?")


def cuda_of_runtime(path: Path) -> Optional[tuple[int, int]]:
    """(major, minor) of the CUDA runtime a libcudart.so.X[.Y[.Z]] implements (minor 0 when unsaid)."""
    match = _VERSION.search(Path(path).name)
    return (int(match[1]), int(match[2] or 0)) if match else None


def torch_cuda() -> Optional[tuple[int, int]]:
    """The CUDA version the installed torch was built for, read from its package metadata
    (the parent never imports torch): the `+cu130` local version, else the CUDA runtime
    package it depends on; (0, 0) for a CPU build; None when torch is not installed."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    local = version.partition("+")[2]
    if local == "cpu":
        return (0, 0)
    if local.startswith("cu") and local[2:].isdigit():
        return int(local[2:-1]), int(local[-1])
    for name in (
        "nvidia-cuda-runtime",
        "nvidia-cuda-runtime-cu13",
        "nvidia-cuda-runtime-cu12",
        "nvidia-cuda-runtime-cu11",
    ):
        try:
            major, minor = importlib.metadata.version(name).split(".")[:2]
            return int(major), int(minor)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
    return None


@dataclass
class VgpuConfig(BackendConfig):
    client_dir: str = "/usr/lib/orion"  # holds the client's libcudart.so*
    vgpus: int = 1  # ORION_VGPU: vGPUs per process
    gmem_mib: Optional[int] = None  # ORION_GMEM: device memory per vGPU (MiB); None: the server's default
    controller: Optional[str] = None  # ORION_CONTROLLER host:port (9123 by default on the controller side)
    # The share of a GPU's compute per vGPU, in percent, written to compute_share_variable: the
    # public edition documents none, later releases read one whose name is not public. The
    # quota probe checks the share achieved (make probe backend=vgpu).
    compute_share: Optional[int] = None
    compute_share_variable: str = "ORION_COMPUTE_SHARE"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.vgpus >= 1, f"backend.vgpus must be >= 1, got {self.vgpus}")
        _check(self.gmem_mib is None or self.gmem_mib >= 1, f"backend.gmem_mib must be >= 1, got {self.gmem_mib}")
        _check(
            self.compute_share is None or 1 <= self.compute_share <= 100,
            f"backend.compute_share must be a percentage in 1..100, got {self.compute_share}",
        )
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

    def check_framework(self, framework):
        if framework != "pytorch":
            return  # TensorFlow's CUDA build is not in its metadata: the worker's evidence decides
        framework_cuda, runtimes = torch_cuda(), self._runtimes()
        client = cuda_of_runtime(runtimes[-1]) if runtimes else None
        if framework_cuda == (0, 0):
            raise UsageError(
                "backend 'vgpu' serves CUDA programs, and the installed torch is a CPU build; "
                "install a CUDA build of torch"
            )
        if framework_cuda and client and client < framework_cuda:
            raise UsageError(
                f"backend 'vgpu': the client runtime {runtimes[-1].name} implements CUDA {client[0]}.{client[1]}, "
                f"and torch was built for CUDA {framework_cuda[0]}.{framework_cuda[1]}: torch would load its own "
                f"runtime and run natively. Use a client release for CUDA >= {framework_cuda[0]}.{framework_cuda[1]} "
                f"or a torch built for CUDA <= {client[0]}.{client[1]}"
            )

    def check_ranks(self, processes):
        # Each process gets backend.vgpus vGPUs of its own: a rank takes its first.
        if processes > 1 and self.config.vgpus != 1:
            raise UsageError(
                f"workload.processes={processes} gives each rank one vGPU of its own, and backend.vgpus="
                f"{self.config.vgpus} would request {self.config.vgpus} per rank. Valid: backend.vgpus=1"
            )

    def engagement(self, seen):
        client = os.path.realpath(self.config.client_dir)
        runtimes = seen.mapped_like("libcudart")
        from_client = [p for p in runtimes if os.path.realpath(p).startswith(client + os.sep)]
        others = [p for p in runtimes if p not in from_client]
        detail = (
            f"mapped from the client: {', '.join(from_client)}"
            if from_client and not others
            else f"libcudart mapped from {', '.join(others) or 'nowhere'}, not from {client}"
        )
        checks = [
            *super().engagement(seen),
            Check("client_runtime_mapped", bool(from_client) and not others, detail),
            device_used(seen),
        ]
        if self.config.gmem_mib:  # the vGPU's memory is what the client's runtime reports
            checks.append(total_is(seen, "gmem_is_total", float(self.config.gmem_mib), "backend.gmem_mib"))
        return checks

    def environment(self):
        env = {
            "LD_LIBRARY_PATH": prepend_path("LD_LIBRARY_PATH", self.config.client_dir),
            "ORION_VGPU": str(self.config.vgpus),
        }
        if self.config.gmem_mib:
            env["ORION_GMEM"] = str(self.config.gmem_mib)
        if self.config.controller:
            env["ORION_CONTROLLER"] = self.config.controller
        if self.config.compute_share:
            env[self.config.compute_share_variable] = str(self.config.compute_share)
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

    def compute_share(self):
        return float(self.config.compute_share) if self.config.compute_share else None
