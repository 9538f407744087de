"""Peak dense throughput of GPUs, for model FLOPs utilization (MFU). Datasheet figures,
TFLOP/s without sparsity; fp32 is the non-tensor-core rate (PyTorch's default matmul
precision is "highest", which does not use TF32)."""

from __future__ import annotations

from typing import Optional

# (substring of the device name, {precision: TFLOP/s}); the first match wins.
PEAK_TFLOPS = [
    ("H200", {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9}),
    ("H100 PCIe", {"bf16": 756.5, "fp16": 756.5, "fp32": 51.2}),
    ("H100 NVL", {"bf16": 835.5, "fp16": 835.5, "fp32": 60.0}),
    ("H100", {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9}),  # SXM5
    ("A100", {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5}),
    ("L40S", {"bf16": 362.1, "fp16": 362.1, "fp32": 91.6}),
    ("L4", {"bf16": 121.0, "fp16": 121.0, "fp32": 30.3}),
    ("A10", {"bf16": 125.0, "fp16": 125.0, "fp32": 31.2}),
    ("V100", {"fp16": 125.0, "fp32": 15.7}),
]
FLOPS_FACTOR = {"infer": 1.0, "train": 3.0}  # a backward pass costs about twice the forward


def peak_tflops(device_name: str, precision: str) -> Optional[float]:
    for key, peaks in PEAK_TFLOPS:
        if key in (device_name or ""):
            return peaks.get(precision)
    return None
