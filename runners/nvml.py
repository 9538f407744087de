"""NVML readings (device view). Optional: without a driver or nvidia-ml-py, nothing is read.
Under an interception layer (HAMi-core) NVML shows the quota, not the board."""

from __future__ import annotations

import contextlib
import os
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
    """Device memory as NVML sees it: the device-wide used memory and this process's own,
    read at the points the worker names (`sample()`: before and right after the measured
    steps) and on entry and exit; the readings keep the largest value seen.

    No thread polls during the measured steps: an NVML query there can take driver locks
    that the step's own CUDA calls then wait on, and a Python thread waking every few
    milliseconds takes the GIL from a launch-bound step (what a hand-written loop never
    pays; docs/pitfalls.md). The reading right after the steps still holds the window's
    peak of what the process took from the driver: PyTorch's caching allocator (and
    TensorFlow's, and ONNX Runtime's arena) keep what they reserved until the process
    ends or empties them, which nothing in a measured window does. The device-wide value
    is other processes' too, at those instants: a snapshot, not their peak."""

    def __init__(self, index: int = 0):
        self.nvml = _nvml()
        self.index = index
        self.peak_device_mb: Optional[float] = None
        self.peak_process_mb: Optional[float] = None
        self.samples = 0
        self.sm_clock_mhz: list[int] = []  # the SM clock at each reading: is the GPU at speed when it counts?
        self.sm_clock_max_mhz: Optional[int] = None
        self._handle = None

    def __enter__(self) -> "MemorySampler":
        if self.nvml:
            self._handle = device_handle(self.nvml, self.index)
            with contextlib.suppress(Exception):
                self.sm_clock_max_mhz = int(self.nvml.nvmlDeviceGetMaxClockInfo(self._handle, self.nvml.NVML_CLOCK_SM))
            self.sample()
        return self

    def __exit__(self, *exc) -> None:
        self.sample()

    def sample(self) -> None:
        """One reading now; never inside the measured steps."""
        if self._handle is None:
            return
        try:
            used = self.nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
            self.peak_device_mb = max(self.peak_device_mb or 0.0, used)
            pid = os.getpid()
            for proc in self.nvml.nvmlDeviceGetComputeRunningProcesses(self._handle):
                if proc.pid == pid and proc.usedGpuMemory is not None:
                    self.peak_process_mb = max(self.peak_process_mb or 0.0, proc.usedGpuMemory / 2**20)
            self.samples += 1
        except Exception:
            pass  # a reading that fails (virtualized NVML) is simply absent
        with contextlib.suppress(Exception):
            self.sm_clock_mhz.append(int(self.nvml.nvmlDeviceGetClockInfo(self._handle, self.nvml.NVML_CLOCK_SM)))

    def readings(self) -> list[dict[str, Any]]:
        out = []
        if self.peak_process_mb is not None:
            out.append(
                {
                    "source": "nvml.process_used",
                    "peak_mb": self.peak_process_mb,
                    "scope": "this process on the device, read before and right after the measured steps",
                }
            )
        if self.peak_device_mb is not None:
            out.append(
                {
                    "source": "nvml.device_used",
                    "peak_mb": self.peak_device_mb,
                    "scope": "whole device, all processes, at the same instants",
                }
            )
        return out


class EnergyMeter:
    """NVML's total-energy counter (millijoules since the driver loaded; Volta and later)
    read at the start and the end of the measured steps. It counts the whole device, so
    other tenants' work is in it; a virtualized or MIG device may not expose it (None).
    Both reads are outside the measured steps; NVML is initialized and the device's handle
    found once, at the first, so each is one query."""

    source = "nvml.total_energy_consumption"
    scope = "whole device, all processes (not this run alone when the device is shared)"

    def __init__(self, index: int = 0):
        self.index = index
        self.joules: Optional[float] = None
        self.seconds: Optional[float] = None
        self.why = ""
        self._start: Optional[tuple[float, int]] = None
        self._nvml: Any = None
        self._handle: Any = None

    def _read(self) -> tuple[float, int]:
        import time

        if self._handle is None:
            self._nvml = _nvml()
            if self._nvml is None:
                raise RuntimeError("no NVIDIA driver")
            self._handle = device_handle(self._nvml, self.index)
        return time.monotonic(), self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

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
