"""NVML readings (device view). Optional: without a driver or nvidia-ml-py, nothing is read.
Under an interception layer (HAMi-core) NVML shows the quota, not the board."""

from __future__ import annotations

import os
import threading
from typing import Any, Optional


def _nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError
        return None


def visible_gpus() -> tuple[list[dict[str, Any]], str]:
    """The GPUs a child process would see, and why there are none when there are none."""
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd.strip() in ("", "-1"):
        return [], f"CUDA_VISIBLE_DEVICES={cvd!r} hides every GPU"
    nvml = _nvml()
    if nvml is None:
        return [], "no NVIDIA driver found (NVML could not be initialized)"
    gpus = [device_info(nvml, i) for i in range(nvml.nvmlDeviceGetCount())]
    return gpus, ("" if gpus else "NVML reports no GPU")


def visible_device_count(cuda_visible_devices: Optional[str]) -> tuple[int, str]:
    """How many devices a CUDA program started with this CUDA_VISIBLE_DEVICES would see, and
    what says so (NVML lists every GPU, whatever the variable hides)."""
    gpus, reason = visible_gpus()
    if cuda_visible_devices is not None and cuda_visible_devices.strip():
        entries = [e for e in cuda_visible_devices.split(",") if e.strip()]
        count = min(len(entries), len(gpus)) if gpus else len(entries)
        return count, f"CUDA_VISIBLE_DEVICES={cuda_visible_devices}"
    return len(gpus), reason or f"{len(gpus)} GPU(s) on this machine"


def device_handle(nvml, index: int = 0):
    """The NVML handle of the device this process uses: by UUID when CUDA_VISIBLE_DEVICES names
    one (a MIG instance: NVML's index 0 would be the whole parent GPU), else by index."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and visible[min(index, len(visible) - 1)][:4].upper() in ("GPU-", "MIG-"):
        return nvml.nvmlDeviceGetHandleByUUID(visible[min(index, len(visible) - 1)].encode())
    return nvml.nvmlDeviceGetHandleByIndex(index)


def device_info(nvml, index: int) -> dict[str, Any]:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    return {
        "index": index,
        "name": _text(nvml.nvmlDeviceGetName(handle)),
        "uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
        "memory_total_mb": memory.total / 2**20,
        "driver_version": _text(nvml.nvmlSystemGetDriverVersion()),
        "cuda_driver_version": _cuda_version(nvml.nvmlSystemGetCudaDriverVersion()),
    }


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"


class MemorySampler:
    """Samples device memory in a background thread: the device-wide used memory and
    this process's own, so the peak between samples is what NVML saw."""

    def __init__(self, index: int = 0, interval_s: float = 0.05):
        self.nvml = _nvml()
        self.index, self.interval_s = index, interval_s
        self.peak_device_mb: Optional[float] = None
        self.peak_process_mb: Optional[float] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "MemorySampler":
        if self.nvml:
            self._handle = device_handle(self.nvml, self.index)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.nvml:
            self._stop.set()
            self._thread.join()
            self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        try:
            used = self.nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
            self.peak_device_mb = max(self.peak_device_mb or 0.0, used)
            pid = os.getpid()
            for proc in self.nvml.nvmlDeviceGetComputeRunningProcesses(self._handle):
                if proc.pid == pid and proc.usedGpuMemory is not None:
                    self.peak_process_mb = max(self.peak_process_mb or 0.0, proc.usedGpuMemory / 2**20)
        except Exception:
            pass  # a reading that fails (virtualized NVML) is simply absent

    def readings(self) -> list[dict[str, Any]]:
        out = []
        if self.peak_process_mb is not None:
            out.append(
                {"source": "nvml.process_used", "peak_mb": self.peak_process_mb, "scope": "this process on the device"}
            )
        if self.peak_device_mb is not None:
            out.append(
                {"source": "nvml.device_used", "peak_mb": self.peak_device_mb, "scope": "whole device, all processes"}
            )
        return out


class EnergyMeter:
    """NVML's total-energy counter (millijoules since the driver loaded; Volta and later)
    read at the start and the end of the measured steps. It counts the whole device, so
    other tenants' work is in it; a virtualized or MIG device may not expose it (None)."""

    source = "nvml.total_energy_consumption"
    scope = "whole device, all processes (not this run alone when the device is shared)"

    def __init__(self, index: int = 0):
        self.index = index
        self.joules: Optional[float] = None
        self.seconds: Optional[float] = None
        self.why = ""
        self._start: Optional[tuple[float, int]] = None

    def _read(self) -> tuple[float, int]:
        import time

        nvml = _nvml()
        if nvml is None:
            raise RuntimeError("no NVIDIA driver")
        return time.monotonic(), nvml.nvmlDeviceGetTotalEnergyConsumption(device_handle(nvml, self.index))

    def start(self) -> None:
        try:
            self._start = self._read()
        except Exception as exc:  # NOT_SUPPORTED on older or virtualized devices
            self.why = f"energy counter not readable: {exc}"

    def stop(self) -> None:
        if self._start is None:
            return
        try:
            now, millijoules = self._read()
        except Exception as exc:
            self.why = f"energy counter not readable: {exc}"
            return
        self.seconds = now - self._start[0]
        self.joules = (millijoules - self._start[1]) / 1e3
