"""The metrics every timed scenario records. Scenarios, diagnostics, the profiler and the
group modes declare their own next to the code that computes them; `Metric.registry`
holds those of every module imported so far. A leaf: it imports only the contract
(tests/unit/test_schema_doc.py imports every declaring module to see them all)."""

from __future__ import annotations

from runners.contracts import Metric

THROUGHPUT = Metric("throughput", "samples/s", "batch_size x steps / sum(step times)")
TOKENS_PER_S = Metric("tokens_per_s", "tokens/s", "text models: throughput x seq_len")
LATENCY_P50 = Metric("latency_ms_p50", "ms", "median step time (synchronized wall clock)")
LATENCY_P90 = Metric("latency_ms_p90", "ms", "90th percentile step time")
LATENCY_P99 = Metric("latency_ms_p99", "ms", "99th percentile step time")
LATENCY_MEAN = Metric("latency_ms_mean", "ms", "mean step time")
LATENCY_STDEV = Metric("latency_ms_stdev", "ms", "standard deviation of the step times")
DEVICE_P50 = Metric("device_ms_p50", "ms", "median CUDA-event time per step (GPU only)")
DEVICE_MEAN = Metric("device_ms_mean", "ms", "mean CUDA-event time per step (GPU only)")
MEMORY_PEAK = Metric("memory_peak_mb", "MiB", "the first memory reading: the allocator on a GPU, peak RSS on the CPU")
TIME_TO_FIRST_STEP = Metric("time_to_first_step_s", "s", "worker spawn to the end of the first (warm-up) step")
STEPS = Metric("steps", "count", "measured steps")
MEASURED_S = Metric("measured_s", "s", "wall time of the measured steps")
TO_DEVICE_BYTES = Metric("to_device_bytes_per_step", "bytes/step", "input bytes copied to the device per step")
TO_HOST_BYTES = Metric("to_host_bytes_per_step", "bytes/step", "output bytes copied back to the host per step")
COPIES = Metric("copies_per_step", "count/step", "host<->device tensor copies the step issued")
ENERGY_PER_STEP = Metric(
    "energy_j_per_step", "J/step", "NVML total-energy counter over the measured steps (whole device)"
)
ENERGY_PER_SAMPLE = Metric("energy_j_per_sample", "J/sample", "energy_j_per_step / batch_size (whole device)")
POWER_MEAN = Metric("power_w_mean", "W", "energy over the measured window / its duration (whole device)")
ACHIEVED_TFLOPS = Metric("achieved_tflops", "TFLOP/s", "published FLOPs x flops factor x throughput")
MFU = Metric("mfu", "ratio", "achieved TFLOP/s over the device's peak (GPU, default size and shape)")
