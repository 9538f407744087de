"""Profile a few steps after the measured ones (`profile=true`): a Chrome trace (open it
in Perfetto), a table of the top operators, and per-step counts of what a remoting or
interception layer pays for: kernel launches, CUDA runtime/driver calls by kind, bytes
copied between host and device, synchronizations, and how busy the GPU was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from runners.contracts import Metric

TRACE_FILE, TABLE_FILE = "trace.json", "top_ops.txt"
# CUDA runtime/driver API calls by kind (prefix match on the call's name). Only calls that
# block the host count as synchronizations: cudaStreamWaitEvent orders two streams on the
# device and returns at once. Memsets copy nothing between host and device: a kind of their own.
API_KINDS = {
    "launch": ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchCooperativeKernel", "cudaGraphLaunch", "cuGraphLaunch"),
    "memcpy": ("cudaMemcpy", "cuMemcpy"),
    "memset": ("cudaMemset", "cuMemset"),
    "synchronize": (
        "cudaDeviceSynchronize",
        "cudaStreamSynchronize",
        "cudaEventSynchronize",
        "cuCtxSynchronize",
        "cuStreamSynchronize",
        "cuEventSynchronize",
    ),
    "malloc": ("cudaMalloc", "cuMemAlloc", "cudaHostAlloc", "cuMemHostAlloc"),
    "free": ("cudaFree", "cuMemFree", "cudaHostFree"),
}
_COPY_KINDS = {"HtoD": "h2d", "DtoH": "d2h", "DtoD": "d2d"}
# Every figure is per measured-workload step (docs/overhead_model.md).
PER_STEP = {
    m.name: m
    for m in [
        Metric("prof_kernel_launches", "count/step", "GPU kernels run"),
        *[Metric(f"prof_api_{kind}", "count/step", f"CUDA runtime/driver {kind} calls") for kind in API_KINDS],
        Metric("prof_synchronizations", "count/step", "host synchronizations (the prof_api_synchronize calls)"),
        *[Metric(f"prof_{kind}_bytes", "bytes/step", f"bytes copied {kind}") for kind in _COPY_KINDS.values()],
        Metric("prof_cpu_ops", "count/step", "framework operators run on the host"),
        Metric("prof_gpu_busy_fraction", "ratio", "time the GPU ran kernels or copies, over the profiled window"),
    ]
}


def _union_us(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def count_trace(trace: dict[str, Any], steps: int) -> dict[str, float]:
    """Per-step counts from a Chrome trace exported by torch.profiler."""
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
    counts = {f"prof_api_{kind}": 0.0 for kind in API_KINDS}
    counts.update(
        prof_kernel_launches=0.0, prof_h2d_bytes=0.0, prof_d2h_bytes=0.0, prof_d2d_bytes=0.0, prof_cpu_ops=0.0
    )
    device_busy, host_span = [], []
    for event in events:
        category, name = event.get("cat", ""), event.get("name", "")
        start, duration = float(event.get("ts", 0)), float(event.get("dur", 0))
        if category == "kernel":
            counts["prof_kernel_launches"] += 1
            device_busy.append((start, start + duration))
        elif category in ("gpu_memcpy", "gpu_memset"):
            device_busy.append((start, start + duration))
            for marker, key in _COPY_KINDS.items():
                if marker in name:
                    counts[f"prof_{key}_bytes"] += float(event.get("args", {}).get("bytes", 0))
        elif category in ("cuda_runtime", "cuda_driver"):
            for kind, prefixes in API_KINDS.items():
                if name.startswith(prefixes):
                    counts[f"prof_api_{kind}"] += 1
                    break
        elif category == "cpu_op":
            counts["prof_cpu_ops"] += 1
        if category in ("cpu_op", "cuda_runtime", "cuda_driver", "user_annotation"):
            host_span.append((start, start + duration))
    per_step = {k: v / steps for k, v in counts.items()}
    per_step["prof_synchronizations"] = per_step["prof_api_synchronize"]
    if device_busy and host_span:
        window = max(e for _, e in host_span + device_busy) - min(s for s, _ in host_span + device_busy)
        per_step["prof_gpu_busy_fraction"] = _union_us(device_busy) / window if window > 0 else 0.0
    return per_step


def profile_torch(
    step: Callable[[], object], synchronize: Callable[[], None], steps: int, device: str, out_dir: Path
) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
            synchronize()
    prof.export_chrome_trace(str(out_dir / TRACE_FILE))
    sort = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    (out_dir / TABLE_FILE).write_text(prof.key_averages().table(sort_by=sort, row_limit=40))
    counts = count_trace(json.loads((out_dir / TRACE_FILE).read_text()), steps)
    return {
        "steps": steps,
        "tool": "torch.profiler",
        "trace_file": TRACE_FILE,
        "table_file": TABLE_FILE,
        "per_step": counts,
    }


def profile_tensorflow(
    step: Callable[[], object], synchronize: Callable[[], None], steps: int, out_dir: Path
) -> dict[str, Any]:
    """TensorFlow's profiler writes a TensorBoard log (xplane); ops are counted from it."""
    import tensorflow as tf

    log_dir = out_dir / "tf_profile"
    tf.profiler.experimental.start(str(log_dir))
    for _ in range(steps):
        step()
        synchronize()
    tf.profiler.experimental.stop()
    counts = {"prof_cpu_ops": 0.0, "prof_kernel_launches": 0.0}
    try:
        from tsl.profiler.protobuf import xplane_pb2  # shipped with TensorFlow
    except ImportError:
        xplane_pb2 = None
    for path in log_dir.rglob("*.xplane.pb"):
        if xplane_pb2 is None:
            break
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            events = sum(len(line.events) for line in plane.lines if line.name in ("TensorFlow Ops", "XLA Ops"))
            if plane.name.startswith("/host:CPU"):
                counts["prof_cpu_ops"] += events
            elif plane.name.startswith("/device:GPU"):
                counts["prof_kernel_launches"] += sum(
                    len(line.events) for line in plane.lines if line.name not in ("TensorFlow Ops", "XLA Ops", "Steps")
                )
    table = "\n".join(str(p.relative_to(out_dir)) for p in log_dir.rglob("*") if p.is_file())
    (out_dir / TABLE_FILE).write_text("TensorFlow profile (open with TensorBoard's profile plugin):\n" + table + "\n")
    return {
        "steps": steps,
        "tool": "tf.profiler",
        "trace_dir": "tf_profile",
        "table_file": TABLE_FILE,
        "per_step": {k: v / steps for k, v in counts.items()},
    }
