"""MFU's peaks: exact device names as the driver reports them, the right peak for the
precision (TF32 where enabled), MIG slices, and no peak rather than a neighbour's."""

import pytest

import zoo
from runners import names
from runners.contracts import DeviceRecord, ModelRecord, Result
from runners.scenarios import scenarios
from runners.worker.gpu_peaks import peak_tflops
from runners.worker.main import mfu


@pytest.mark.parametrize(
    "name, precision, tf32, tflops, basis",
    [
        ("NVIDIA H100 80GB HBM3", "bf16", False, 989.4, "bf16"),  # SXM5
        ("NVIDIA H100 PCIe", "bf16", False, 756.5, "bf16"),
        ("NVIDIA H100 NVL", "fp16", False, 835.5, "fp16"),
        ("NVIDIA H200", "bf16", False, 989.4, "bf16"),
        ("NVIDIA H200 NVL", "bf16", False, 835.5, "bf16"),  # not the SXM part's figure
        ("NVIDIA H100 80GB HBM3", "fp32", False, 66.9, "fp32"),
        ("NVIDIA H100 80GB HBM3", "fp32", True, 494.7, "tf32"),
        ("NVIDIA A100-SXM4-80GB", "fp32", True, 156.0, "tf32"),
        ("NVIDIA A100-PCIE-40GB", "bf16", False, 312.0, "bf16"),
        ("NVIDIA A100 80GB PCIe", "fp32", False, 19.5, "fp32"),
        ("NVIDIA L4", "bf16", False, 121.0, "bf16"),
        ("NVIDIA L40", "bf16", False, 181.05, "bf16"),  # "L40" must not match "L4", nor "L40S"
        ("NVIDIA L40S", "bf16", False, 362.05, "bf16"),
        ("Tesla V100-SXM2-32GB", "fp16", False, 125.0, "fp16"),
        ("Tesla V100-PCIE-16GB", "fp16", False, 112.0, "fp16"),
        ("Tesla V100S-PCIE-32GB", "fp32", True, 16.4, "fp32"),  # Volta: no TF32, the fp32 peak
        ("NVIDIA A100-SXM4-40GB MIG 3g.20gb", "bf16", False, 312.0 * 3 / 7, "bf16"),
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "bf16", False, 989.4 / 7, "bf16"),
    ],
)
def test_the_peak_of_real_device_names(name, precision, tf32, tflops, basis):
    peak = peak_tflops(name, precision, tf32)
    assert peak is not None and peak.tflops == pytest.approx(tflops) and peak.basis == basis


@pytest.mark.parametrize(
    "name, precision",
    [
        ("NVIDIA GeForce RTX 4090", "bf16"),  # not in the table
        ("NVIDIA H20", "bf16"),  # a prefix of H200, another GPU
        ("NVIDIA L4X", "bf16"),
        ("", "fp32"),
        ("Tesla V100-SXM2-16GB", "bf16"),  # Volta has no bf16
    ],
)
def test_no_peak_for_an_unknown_device_or_precision(name, precision):
    assert peak_tflops(name, precision, False) is None


class GPU:
    device = "cuda"

    def __init__(self, name, precision="bf16", tf32=False):
        self.name, self.precision, self.tf32 = name, precision, tf32

    def describe(self):
        return {"cuda_device": {"name": self.name}}

    def tf32_enabled(self, entry):
        return self.tf32


def _result(throughput: float) -> Result:
    result = Result(
        run_id="r",
        run_name="n",
        config_hash="h",
        task="workload",
        workload="train",
        model=ModelRecord("resnet50", None, "pytorch", "t"),
        backend={"name": "native", "device": "cuda"},
        device=DeviceRecord("cuda"),
        config={},
    )
    result.set(names.THROUGHPUT, throughput)
    return result


def test_mfu_uses_the_published_flops_and_the_peak_it_records():
    train, resnet = scenarios.get("train")(), zoo.get("resnet50")()
    result = _result(2616.0)
    mfu(result, train, resnet, zoo.InputShape(), GPU("NVIDIA H100 80GB HBM3"))
    assert result.value("achieved_tflops") == pytest.approx(8.178368512e9 * 3 * 2616 / 1e12)
    assert result.value("mfu") == pytest.approx(result.value("achieved_tflops") / 989.4)
    assert result.details["mfu_basis"]["peak"] == "bf16" and result.details["mfu_basis"]["factor"] == 3.0
    # fp32 convolutions on TF32 tensor cores: the TF32 peak, so MFU stays below 1
    fp32 = _result(2616.0)
    mfu(fp32, train, resnet, zoo.InputShape(), GPU("NVIDIA H100 80GB HBM3", "fp32", tf32=True))
    assert fp32.details["mfu_basis"]["peak_tflops"] == 494.7 and fp32.value("mfu") < 1
    unknown = _result(2616.0)
    mfu(unknown, train, resnet, zoo.InputShape(), GPU("NVIDIA GeForce RTX 4090"))
    assert "mfu" not in unknown.metrics and unknown.value("achieved_tflops") > 0
    assert unknown.details["mfu_basis"]["peak"].startswith("none")
    tiny = _result(1.0)
    mfu(tiny, train, zoo.get("resnet50")("tiny"), zoo.InputShape(), GPU("NVIDIA H200"))
    assert "mfu" not in tiny.metrics  # figures hold for the default size only
    generate = _result(1.0)
    mfu(generate, scenarios.get("generate")(), resnet, zoo.InputShape(), GPU("NVIDIA H200"))
    assert "mfu" not in generate.metrics  # no FLOPs factor for the decode loop


def test_convolutional_entries_are_the_vision_cnns():
    assert zoo.get("resnet50").convolutional and zoo.get("keras_resnet50").convolutional
    assert not zoo.get("vit_b_16").convolutional and not zoo.get("bert").convolutional
