"""Figures that explain overhead, on synthetic inputs: profiler counts, the overhead
estimate from microbenchmarks, model FLOPs utilization."""

import pytest

from runners.analysis.overhead_attribution import estimate
from runners.worker.profiler import PER_STEP, count_trace

from conftest import MICRO_NATIVE, MICRO_REMOTE


def _event(cat, name, ts, dur, **args):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "args": args}


def test_trace_counts_per_step_from_a_gpu_trace():
    trace = {
        "traceEvents": [
            _event("cpu_op", "aten::mm", 0, 100),
            _event("cuda_runtime", "cudaLaunchKernel", 10, 5),
            _event("cuda_runtime", "cudaLaunchKernel", 20, 5),
            _event("cuda_driver", "cuLaunchKernel", 30, 5),
            _event("cuda_runtime", "cudaMemcpyAsync", 40, 5),
            _event("cuda_runtime", "cudaStreamSynchronize", 50, 40),
            _event("cuda_runtime", "cudaStreamWaitEvent", 91, 1),  # orders streams on the device: no host wait
            _event("cuda_runtime", "cudaMemsetAsync", 92, 1),  # not a copy between host and device
            _event("cuda_runtime", "cudaMalloc", 95, 2),
            _event("cuda_runtime", "cudaFree", 97, 2),
            _event("kernel", "gemm", 20, 30),
            _event("kernel", "relu", 40, 20),  # overlapping: 40 us busy
            _event("gpu_memcpy", "Memcpy HtoD (Pageable -> Device)", 60, 10, bytes=4096),
            _event("gpu_memcpy", "Memcpy DtoH (Device -> Pageable)", 80, 10, bytes=1024),
            {"ph": "i", "cat": "kernel", "name": "instant marker", "ts": 0},  # not a duration event
        ]
    }
    counts = count_trace(trace, steps=2)
    assert counts["prof_kernel_launches"] == 1 and counts["prof_api_launch"] == 1.5
    assert counts["prof_api_memcpy"] == 0.5 and counts["prof_api_synchronize"] == 0.5
    assert counts["prof_api_memset"] == 0.5
    assert counts["prof_api_malloc"] == 0.5 and counts["prof_api_free"] == 0.5
    assert (counts["prof_h2d_bytes"], counts["prof_d2h_bytes"], counts["prof_d2d_bytes"]) == (2048, 512, 0)
    assert counts["prof_synchronizations"] == 0.5 and counts["prof_cpu_ops"] == 0.5
    assert counts["prof_gpu_busy_fraction"] == pytest.approx(60 / 100)  # kernels 20-60 + copies 60-70, 80-90


def test_overhead_estimate_adds_what_each_call_costs_more():
    profile = {
        "prof_api_launch": 100,
        "prof_api_synchronize": 2,
        "prof_api_malloc": 1,
        "prof_api_free": 1,
        "prof_api_memcpy": 2,
        "prof_h2d_bytes": 2 * 2**20,
        "prof_d2h_bytes": 0,
    }
    found = estimate(profile, MICRO_NATIVE, MICRO_REMOTE, step_ms=10.0)
    assert found["launch_ms"] == pytest.approx(100 * 20 / 1e3)
    assert found["sync_ms"] == pytest.approx(2 * (60 - 10) / 1e3)
    assert found["malloc_ms"] == pytest.approx((200 + 100) / 1e3)
    assert found["copy_ms"] == pytest.approx((2 * 2**20 / 5e9 - 2 * 2**20 / 10e9) * 1e3)
    added = found["launch_ms"] + found["sync_ms"] + found["malloc_ms"] + found["copy_ms"]
    assert found["estimated_overhead_pct"] == pytest.approx(added / (10 + added) * 100)
    assert estimate(profile, MICRO_NATIVE, MICRO_NATIVE, 10.0)["estimated_overhead_pct"] == 0
    assert estimate({}, MICRO_NATIVE, MICRO_REMOTE, 10.0) is None  # no profile, no estimate


def test_every_profiler_count_is_a_declared_metric():
    trace = {"traceEvents": [_event("kernel", "k", 0, 1), _event("cpu_op", "aten::mm", 0, 2)]}
    assert set(count_trace(trace, steps=1)) <= set(PER_STEP)
