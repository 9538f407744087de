"""The device a run used is what its worker observed: a CUDA run whose framework or runtime
reports no CUDA device records no device name, never the CPU's (the first GPU run recorded
"Intel(R) Xeon(R) Processor" for diagnostics, ONNX Runtime and MNN runs of kind cuda)."""

import pytest

from runners.contracts import Job, Result
from runners.worker import fingerprint
from runners.worker.main import record_environment


class Adapter:
    """A framework adapter's stand-in: what it describes, and the GPU its runtime ran on."""

    def __init__(self, described=None, seen=None):
        self.described, self.seen = described or {}, seen or {}

    def describe(self):
        return self.described

    def device_seen(self):
        return self.seen


def _result(device: str, adapter) -> Result:
    job = Job(
        run_id="r1",
        run_name="probe-native",
        run_dir="/nonexistent",
        config_hash="h",
        config={"backend": {"name": "native"}, "diagnostic": {"name": "probe"}},
        model=None,
        backend={"name": "native" if device == "cuda" else "cpu", "device": device, "env": {}},
        suite={},
        task="probe",
    )
    result = Result.for_job(job)
    record_environment(job, result, adapter)
    return result


@pytest.mark.parametrize(
    "adapter",
    [None, Adapter({"onnxruntime": "1.23", "providers": {"ran": ["CPUExecutionProvider"]}})],
    ids=["diagnostic", "runtime-on-the-cpu"],
)
def test_a_cuda_run_that_saw_no_device_records_no_name(adapter):
    result = _result("cuda", adapter)
    assert result.device.kind == "cuda" and result.device.name is None
    assert result.environment.cpu_model  # the CPU is still described, as the host's


def test_a_cuda_run_records_the_device_its_framework_or_runtime_reported():
    described = Adapter({"cuda_device": {"name": "NVIDIA H200", "capability": "9.0"}})
    assert _result("cuda", described).device.name == "NVIDIA H200"
    provider = Adapter({"onnxruntime": "1.23"}, {"source": "onnxruntime CUDAExecutionProvider", "name": "NVIDIA L4"})
    assert _result("cuda", provider).device.name == "NVIDIA L4"


class _FakeCuda:
    """torch.cuda of a diagnostic that initialized its device (the probe, the microbench)."""

    @staticmethod
    def is_available():
        return True

    @staticmethod
    def is_initialized():
        return True

    @staticmethod
    def current_device():
        return 0

    @staticmethod
    def get_device_properties(index):
        return type("Props", (), {"name": "NVIDIA H200", "uuid": "GPU-1", "total_memory": 2**30})()

    @staticmethod
    def mem_get_info(index):
        return 2**29, 2**30


def test_a_diagnostic_records_the_device_its_torch_initialized(monkeypatch):
    """No framework adapter: the name comes from torch.cuda in the worker (the second H200
    run recorded null for every diagnostic: the fallback called device_seen wrongly)."""
    import sys
    import types

    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=_FakeCuda))
    assert _result("cuda", None).device.name == "NVIDIA H200"


def test_a_cpu_run_records_the_cpu():
    assert _result("cpu", Adapter({"torch": "2"})).device.name == fingerprint.cpu_model()
