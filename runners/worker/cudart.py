"""The device a runtime without torch.cuda ran on, asked of the CUDA runtime library that
runtime itself loaded into this process (never one loaded here for the purpose): its
cudaMemGetInfo total is what an interception layer (HAMi-core) or a remoting client
(vGPU) reports, so the backends' quota checks hold for every runtime, not for torch only."""

from __future__ import annotations

import ctypes
import os
from typing import Any, Optional

PROPS_BYTES = 16384  # more than any CUDA release's cudaDeviceProp; name[256] and uuid[16] lead it


def _loaded(path: str) -> Optional[ctypes.CDLL]:
    """The library at `path` if this process has it loaded already (RTLD_NOLOAD), else None."""
    try:
        return ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    except OSError:
        return None


def _uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _context_active(mapped: list[str], index: int) -> Optional[bool]:
    """Whether the driver's primary context of device `index` is active (the runtime used the
    device), where the driver library is loaded; None where it is not (a remoting client)."""
    driver = next((p for p in mapped if os.path.basename(p).startswith("libcuda.so")), None)
    cuda = _loaded(driver) if driver else None
    if cuda is None:
        return None
    device, flags, active = ctypes.c_int(), ctypes.c_uint(), ctypes.c_int()
    if cuda.cuDeviceGet(ctypes.byref(device), index) != 0:
        return False
    if cuda.cuDevicePrimaryCtxGetState(device, ctypes.byref(flags), ctypes.byref(active)) != 0:
        return False
    return bool(active.value)


def runtime_device(mapped: list[str], source: str) -> dict[str, Any]:
    """The device as the loaded libcudart reports it: {} where no runtime is loaded or it has
    no device; the values None, with the reason, where it cannot be read (a failed check)."""
    runtimes = [p for p in mapped if os.path.basename(p).startswith("libcudart.so")]
    if not runtimes:
        return {}
    unread = {"source": f"{source} (libcudart: {runtimes[0]})", "name": None, "uuid": None}
    runtime = _loaded(runtimes[0])
    if runtime is None:
        return {**unread, "error": f"{runtimes[0]} is mapped but cannot be opened"}
    if not all(hasattr(runtime, symbol) for symbol in ("cudaGetDevice", "cudaMemGetInfo")):
        return {**unread, "error": f"{runtimes[0]} has no cudaGetDevice/cudaMemGetInfo"}
    index = ctypes.c_int()
    if runtime.cudaGetDevice(ctypes.byref(index)) != 0:
        return {}  # no CUDA device visible to this process (the CPU backend hides them)
    if _context_active(mapped, index.value) is False:
        # Asking for its memory would create the context now: the runtime never used the device.
        return {**unread, "error": f"the runtime created no context on device {index.value}"}
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    error = runtime.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total))
    if error != 0:
        return {**unread, "error": f"cudaMemGetInfo returned {error}"}
    props = ctypes.create_string_buffer(PROPS_BYTES)
    query = getattr(runtime, "cudaGetDeviceProperties_v2", None) or getattr(runtime, "cudaGetDeviceProperties", None)
    named = query is not None and query(props, index) == 0
    name = props.raw[:256].split(b"\0")[0].decode(errors="replace") if named else None
    return {
        **unread,
        "index": index.value,
        "name": name,
        "uuid": _uuid(props.raw[256:272]) if named else None,
        "mig": "MIG" in (name or ""),
        "memory_total_seen_mb": total.value / 2**20,
    }
