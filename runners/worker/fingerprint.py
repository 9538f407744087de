"""The environment fingerprint the worker records with every result: where, on what, with what."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

from runners.contracts import Environment

PACKAGES = ("torch", "torchvision", "transformers", "tensorflow", "tensorflow-cpu", "keras", "numpy", "nvidia-ml-py")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


_GPU_LIBRARIES = ("libcudart", "libcuda.so", "libnvidia-ml", "libvgpu", "liborion", "libcublas.so", "libcudnn.so")


def loaded_gpu_libraries() -> list[str]:
    """The CUDA-related shared libraries mapped into this process: shows whether a
    virtualization layer's runtime (client libcudart, preloaded libvgpu.so) was really
    the one loaded, or the framework's bundled copy won."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = {line.split()[-1] for line in maps.splitlines() if "/" in line}
    return sorted(p for p in paths if any(name in os.path.basename(p) for name in _GPU_LIBRARIES))


def collect(extra: dict[str, Any] | None = None) -> Environment:
    """Host facts, readable without any framework; the framework adds its own via `extra`."""
    return Environment(
        **{
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "packages": package_versions(),
            "gpu_libraries_loaded": loaded_gpu_libraries(),
            **(extra or {}),
        }
    )
