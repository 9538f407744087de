"""Peak dense throughput of GPUs, for model FLOPs utilization (MFU). Datasheet figures in
TFLOP/s without sparsity, looked up by the exact device name the driver reports (less its
"NVIDIA "/"Tesla " prefix): a name not in the table gets no MFU rather than a neighbour's
peak ("L40" is not an "L4"; "H200 NVL" is not an "H200"). Which peak applies:
- fp32 where TF32 tensor cores are enabled for the model's main operation (cuDNN
  convolutions and TensorFlow by default; PyTorch matmuls only when allowed): the TF32 peak;
  fp32 otherwise: the non-tensor-core FP32 peak; bf16/fp16: the tensor-core peak.
- A MIG instance "<GPU> MIG <g>g.<mem>gb" gets g/7 of its GPU's peak (7 compute slices)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Peaks:
    fp32: float  # CUDA cores, no tensor cores
    tf32: Optional[float]  # None: no TF32 tensor cores (Volta)
    bf16: Optional[float]  # None: no bf16 (Volta)
    fp16: float


_H100_SXM = Peaks(fp32=66.9, tf32=494.7, bf16=989.4, fp16=989.4)
_H100_PCIE = Peaks(fp32=51.2, tf32=378.0, bf16=756.5, fp16=756.5)
_H_NVL = Peaks(fp32=60.0, tf32=417.5, bf16=835.5, fp16=835.5)  # H100 NVL and H200 NVL, per GPU
_A100 = Peaks(fp32=19.5, tf32=156.0, bf16=312.0, fp16=312.0)  # SXM4 and PCIe alike
_V100_SXM = Peaks(fp32=15.7, tf32=None, bf16=None, fp16=125.0)
_V100_PCIE = Peaks(fp32=14.0, tf32=None, bf16=None, fp16=112.0)

PEAKS: dict[str, Peaks] = {
    "H200": _H100_SXM,  # H200 SXM: the H100 SXM's compute with more memory
    "H200 NVL": _H_NVL,
    "H100 80GB HBM3": _H100_SXM,  # how the driver names the H100 SXM5
    "H100 SXM5 80GB": _H100_SXM,
    "H100 PCIe": _H100_PCIE,
    "H100 NVL": _H_NVL,
    "A100-SXM4-40GB": _A100,
    "A100-SXM4-80GB": _A100,
    "A100-PCIE-40GB": _A100,
    "A100 80GB PCIe": _A100,
    "L40S": Peaks(fp32=91.6, tf32=183.0, bf16=362.05, fp16=362.05),
    "L40": Peaks(fp32=90.5, tf32=90.5, bf16=181.05, fp16=181.05),
    "L4": Peaks(fp32=30.3, tf32=60.0, bf16=121.0, fp16=121.0),
    "A10": Peaks(fp32=31.2, tf32=62.5, bf16=125.0, fp16=125.0),
    "V100-SXM2-16GB": _V100_SXM,
    "V100-SXM2-32GB": _V100_SXM,
    "V100-SXM3-32GB": _V100_SXM,
    "V100-PCIE-16GB": _V100_PCIE,
    "V100-PCIE-32GB": _V100_PCIE,
    "V100S-PCIE-32GB": Peaks(fp32=16.4, tf32=None, bf16=None, fp16=130.0),
}
MIG_SLICES = 7
_MIG = re.compile(r"^(?P<gpu>.+?) MIG (?P<slices>\d)g\.\d+gb$")


@dataclass(frozen=True)
class Peak:
    tflops: float
    basis: str  # which datasheet peak: fp32, tf32, bf16 or fp16 (tensor cores)
    gpu: str  # the table's name
    fraction: float = 1.0  # a MIG instance's share of its GPU


def lookup(device_name: str) -> tuple[Optional[Peaks], str, float]:
    """The table row of a device name, the name it matched and the MIG fraction."""
    name = (device_name or "").strip()
    for prefix in ("NVIDIA ", "Tesla "):
        name = name.removeprefix(prefix)
    fraction = 1.0
    mig = _MIG.match(name)
    if mig:
        name, fraction = mig["gpu"].removeprefix("NVIDIA "), int(mig["slices"]) / MIG_SLICES
    return PEAKS.get(name), name, fraction


def peak_tflops(device_name: str, precision: str, tf32: bool = False) -> Optional[Peak]:
    """The peak a run at `precision` can reach on `device_name`, or None: unknown device, or a
    precision the device has no peak for (bf16 on a V100)."""
    peaks, name, fraction = lookup(device_name)
    if peaks is None:
        return None
    basis = "tf32" if precision == "fp32" and tf32 and peaks.tf32 else precision
    value = getattr(peaks, basis, None)
    return Peak(value * fraction, basis, name, fraction) if value else None
