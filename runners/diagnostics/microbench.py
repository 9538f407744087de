"""`make microbench backend=<name>` (`workload=microbench`): what a remoting or
interception layer changes in the CUDA calls themselves. Runs in the worker on the
backend's GPU; every figure is a metric, so `make compare` compares them too.

- context: worker spawn to the first completed kernel (interpreter, imports, CUDA context);
- launch: host time per launch of an (almost) empty kernel, launched back to back;
- launch_sync: one empty kernel plus a synchronize, the round trip a remoting layer pays;
- malloc / free: cudaMalloc and cudaFree of 1 MiB, called through the CUDA runtime the
  process really loaded (the caching allocator of the framework would hide them);
- memcpy: bandwidth from 4 KiB to 1 GiB, host to device and back from pinned and pageable
  memory, and device to device;
- GEMM: bf16 and fp32 matrix multiplication throughput."""

from __future__ import annotations

import ctypes
import statistics
import time
from pathlib import Path
from typing import Callable

from runners import names
from runners.contracts import SUCCESS, Job, Metric, Result
from runners.diagnostics import Diagnostic, diagnostics

SIZES = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20, 1 << 30]  # 4 KiB .. 1 GiB
LABEL = {4 << 10: "4k", 64 << 10: "64k", 1 << 20: "1m", 16 << 20: "16m", 256 << 20: "256m", 1 << 30: "1g"}
FIGURES = {
    m.name: m
    for m in [
        Metric("context_s", "s", "microbench: worker spawn to the first completed kernel"),
        Metric("launch_us", "us", "microbench: host time per launch of an empty kernel, back to back"),
        Metric("launch_sync_us", "us", "microbench: one empty kernel plus a synchronize"),
        Metric("malloc_us", "us", "microbench: cudaMalloc of 1 MiB"),
        Metric("free_us", "us", "microbench: cudaFree of 1 MiB"),
        *[
            Metric(f"{direction}_{memory}_{LABEL[size]}_gbps", "GB/s", f"microbench: {direction} copy bandwidth")
            for size in SIZES
            for direction in ("h2d", "d2h")
            for memory in ("pinned", "pageable")
        ],
        *[Metric(f"d2d_{LABEL[size]}_gbps", "GB/s", "microbench: device-to-device copy bandwidth") for size in SIZES],
        *[
            Metric(f"gemm_{dtype}_tflops", "TFLOP/s", f"microbench: {dtype} 8192^3 matmul")
            for dtype in ("bf16", "fp32")
        ],
    ]
}


def _timed(fn: Callable[[], None], sync: Callable[[], None], min_s: float = 0.2, min_reps: int = 5) -> float:
    """Median seconds per call, synchronized around each call."""
    times, began = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - began < min_s:
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cudart() -> ctypes.CDLL:
    """The libcudart mapped into this process (a vGPU client's, where one is in place)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if "libcudart.so" in path:
            return ctypes.CDLL(path)
    return ctypes.CDLL("libcudart.so")


def run(job: Job, result: Result, log: Callable[[str], None]) -> None:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("microbenchmarks need a CUDA device, and the worker sees none")
    sync = torch.cuda.synchronize
    torch.cuda._sleep(0)  # first kernel: creates the context
    sync()
    metrics: dict[str, float] = {"context_s": time.time() - job.spawned_at}

    for _ in range(100):
        torch.cuda._sleep(0)
    sync()
    count, began = 2000, time.perf_counter()
    for _ in range(count):
        torch.cuda._sleep(0)
    metrics["launch_us"] = (time.perf_counter() - began) / count * 1e6
    sync()
    metrics["launch_sync_us"] = _timed(lambda: torch.cuda._sleep(0), sync, min_s=0.5, min_reps=200) * 1e6
    log(f"launch {metrics['launch_us']:.2f} us, launch+sync {metrics['launch_sync_us']:.2f} us")

    cudart, pointer = _cudart(), ctypes.c_void_p()
    malloc, free = [], []
    for _ in range(200):
        start = time.perf_counter()
        code = cudart.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(1 << 20))
        middle = time.perf_counter()
        cudart.cudaFree(pointer)
        malloc.append(middle - start)
        free.append(time.perf_counter() - middle)
        if code != 0:
            raise RuntimeError(f"cudaMalloc returned error {code}")
    metrics["malloc_us"], metrics["free_us"] = statistics.median(malloc) * 1e6, statistics.median(free) * 1e6

    for size in SIZES:
        device_a = torch.empty(size, dtype=torch.uint8, device="cuda")
        device_b = torch.empty(size, dtype=torch.uint8, device="cuda")
        for kind, host in (
            ("pinned", torch.empty(size, dtype=torch.uint8, pin_memory=True)),
            ("pageable", torch.empty(size, dtype=torch.uint8)),
        ):
            metrics[f"h2d_{kind}_{LABEL[size]}_gbps"] = (
                size / _timed(lambda d=device_a, h=host: d.copy_(h, non_blocking=True), sync) / 1e9
            )
            metrics[f"d2h_{kind}_{LABEL[size]}_gbps"] = (
                size / _timed(lambda d=device_a, h=host: h.copy_(d, non_blocking=True), sync) / 1e9
            )
            del host
        metrics[f"d2d_{LABEL[size]}_gbps"] = size / _timed(lambda a=device_a, b=device_b: b.copy_(a), sync) / 1e9
        del device_a, device_b
        torch.cuda.empty_cache()
        log(f"memcpy {LABEL[size]}: h2d pinned {metrics[f'h2d_pinned_{LABEL[size]}_gbps']:.1f} GB/s")

    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        n = 8192
        a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
        seconds = _timed(lambda a=a, b=b: a @ b, sync, min_s=2.0)
        metrics[f"gemm_{name}_tflops"] = 2 * n**3 / seconds / 1e12
    log(f"GEMM bf16 {metrics['gemm_bf16_tflops']:.0f} TFLOP/s, fp32 {metrics['gemm_fp32_tflops']:.1f} TFLOP/s")

    result.set(names.TIME_TO_FIRST_STEP, metrics["context_s"])
    for name, value in metrics.items():
        result.set(FIGURES[name], value)
    result.status = SUCCESS


@diagnostics.register
class Microbench(Diagnostic):
    name = "microbench"
    summary = "launch, sync, malloc, memcpy and GEMM microbenchmarks of a GPU backend"
    run = staticmethod(run)
