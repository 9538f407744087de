"""What the scenarios derive and refuse, on synthetic inputs: generation latencies from
the measured generations only; data-parallel ranks against the devices a backend gives;
compilation needs a warm-up step."""

import pytest

from runners.backends import create
from runners.backends import local as local_module
from runners.backends.mig import MigConfig
from runners.backends.vgpu import VgpuConfig
from runners.config import BackendConfig, Compile, WorkloadConfig
from runners.contracts import DeviceRecord, ModelRecord, Result
from runners.errors import UsageError
from runners.scenarios import scenarios
from runners.worker.measure import Measurement


def test_generation_latencies_come_from_the_measured_generations_only():
    class Framework:  # 2 warm-up generations, 3 measured, then 4 profiled ones
        ttft_ms = [900.0, 800.0, 10.0, 11.0, 12.0, 500.0, 500.0, 500.0, 500.0]
        tpot_ms = [90.0, 80.0, 1.0, 2.0, 3.0, 50.0, 50.0, 50.0, 50.0]

    result = Result(
        "r", "n", "h", "workload", "generate", ModelRecord("gpt2", "tiny", "pytorch", "t"), {}, DeviceRecord("cpu"), {}
    )
    m = Measurement(step_times_ms=[1.0, 1.0, 1.0], warmup_steps=2)
    generate = scenarios.get("generate")()
    generate.derive(result, Framework(), generate.config_class(), m)
    assert result.value("ttft_ms_p50") == 11.0 and result.value("tpot_ms_mean") == 2.0
    assert result.details["generations"]["ttft_ms"] == [10.0, 11.0, 12.0]


def _native_seeing(monkeypatch, tmp_path, gpus: int):
    fake = [{"index": i, "name": "NVIDIA H200", "uuid": f"GPU-{i}"} for i in range(gpus)]
    monkeypatch.setattr("runners.nvml.visible_gpus", lambda: (fake, ""))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return create(BackendConfig(name="native"), tmp_path)


def test_more_ranks_than_visible_gpus_is_refused_in_one_line(monkeypatch, tmp_path):
    native = _native_seeing(monkeypatch, tmp_path, gpus=1)
    with pytest.raises(UsageError) as refused:
        native.check_ranks(2)
    assert "workload.processes=2" in str(refused.value) and "sees 1" in str(refused.value)
    assert "Valid: workload.processes=1..1" in str(refused.value) and "\n" not in str(refused.value)
    native.check_ranks(1)
    _native_seeing(monkeypatch, tmp_path, gpus=2).check_ranks(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # two on the machine, one visible
    with pytest.raises(UsageError, match="CUDA_VISIBLE_DEVICES=1"):
        native.check_ranks(2)
    assert local_module.CpuBackend  # the CPU backend has no device to count: gloo ranks
    create(BackendConfig(name="cpu"), tmp_path).check_ranks(8)


def test_a_vgpu_rank_gets_one_vgpu_and_mig_runs_one_rank(tmp_path):
    create(VgpuConfig(name="vgpu", vgpus=1), tmp_path).check_ranks(2)
    with pytest.raises(UsageError, match="Valid: backend.vgpus=1"):
        create(VgpuConfig(name="vgpu", vgpus=2), tmp_path).check_ranks(2)
    mig = create(MigConfig(name="mig"), tmp_path)
    mig.check_ranks(1)
    with pytest.raises(UsageError, match="Valid: workload.processes=1"):
        mig.check_ranks(2)


def test_compilation_needs_a_warm_up_step():
    with pytest.raises(ValueError, match="workload.compile=inductor needs workload.warmup_steps >= 1"):
        WorkloadConfig(compile=Compile.inductor, warmup_steps=0)
    WorkloadConfig(compile=Compile.none, warmup_steps=0)


def test_each_scenario_defaults_to_where_its_real_programs_keep_data():
    defaults = {name: scenarios.get(name).config_class() for name in scenarios.names()}
    assert (defaults["infer"].inputs.value, defaults["infer"].sync.value) == ("host", "step")
    assert (defaults["train"].inputs.value, defaults["train"].sync.value, defaults["train"].pinned) == (
        "loader",
        "window",
        True,
    )
    assert defaults["train_ddp"].inputs.value == "loader" and defaults["generate"].sync.value == "step"
