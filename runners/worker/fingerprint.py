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


def package_sources() -> dict[str, str]:
    """`venv` for a package installed in this environment, `host` for one it reuses from
    the interpreter's own site packages (make setup on a host with a preinstalled framework)."""
    sources = {}
    for name in PACKAGES:
        try:
            where = Path(importlib.metadata.distribution(name).locate_file("")).resolve()
        except importlib.metadata.PackageNotFoundError:
            continue
        sources[name] = "venv" if where.is_relative_to(Path(sys.prefix).resolve()) else "host"
    return sources


# The CUDA-related libraries, by the start of their file names.
GPU_LIBRARIES = ("libcudart", "libcuda.", "libnvidia-ml", "libvgpu", "liborion", "libcublas.", "libcudnn.")


def mapped_files() -> list[str]:
    """Every shared library file mapped into this process."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    return sorted({line.split()[-1] for line in lines if "/" in line and ".so" in os.path.basename(line.split()[-1])})


def gpu_library(path: str) -> str | None:
    """Which CUDA-related library a file is (libcudart, libcuda, libvgpu...), or None."""
    return next((n.rstrip(".") for n in GPU_LIBRARIES if os.path.basename(path).startswith(n)), None)


def loaded_gpu_libraries() -> list[str]:
    """The CUDA-related shared libraries mapped into this process: shows whether a
    virtualization layer's runtime (client libcudart, preloaded libvgpu.so) was really
    the one loaded, or the framework's bundled copy won."""
    return [path for path in mapped_files() if gpu_library(path)]


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
            "package_sources": package_sources(),
            "gpu_libraries_loaded": loaded_gpu_libraries(),
            **(extra or {}),
        }
    )
