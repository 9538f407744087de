"""The hand-written loop's placement (the crash of the first GPU run: model and inputs on
different devices), the like-with-like check, and what the worker does inside its
measured window on a GPU (CUDA events, NVML), with stand-ins for CUDA and NVML."""

import os
import threading
from types import SimpleNamespace

import pytest

from runners import nvml
from runners.cli import bench_overhead
from runners.worker import bare_loop

LOOP = dict(
    model="bert",
    size="tiny",
    precision="fp32",
    batch_size=2,
    seq_len=16,
    image_size=64,
    seed=0,
    warmup_steps=1,
    min_steps=2,
    min_duration_s=0.0,
    max_duration_s=30.0,
)


def test_the_loop_puts_model_and_inputs_on_its_device():
    # `meta` stands for an accelerator: nothing of the model or the batch may stay on the CPU.
    out = bare_loop.run(bare_loop.Loop(**LOOP, device="meta"))
    assert out["placement"] == {"model": ["meta"], "inputs": ["meta"]}
    assert len(out["step_times_ms"]) >= 2 and out["params"] > 0


def test_a_loop_whose_model_stayed_behind_fails_before_timing(monkeypatch):
    def model_left_on_the_cpu(loop):  # what crashed on the H200: inputs on cuda:0, model on cpu
        import torch

        import zoo

        entry = zoo.get(loop.model)(loop.size)
        shape = zoo.InputShape(seq_len=loop.seq_len, image_size=loop.image_size)
        batch = entry.make_batch(loop.batch_size, shape, loop.seed)
        return entry, entry.build(shape).eval(), batch, torch.device(loop.device)

    monkeypatch.setattr(bare_loop, "build", model_left_on_the_cpu)
    with pytest.raises(RuntimeError, match=r"model is on \['cpu'\] and its inputs on \['meta'\]"):
        bare_loop.run(bare_loop.Loop(**LOOP, device="meta"))


def _pair(params=100, suite_bytes=64.0, loop_device="cuda:0", inputs="host"):
    result = SimpleNamespace(
        measurement=SimpleNamespace(inputs=inputs, sync="step", steps_per_time=1),
        model=SimpleNamespace(params=100),
        value=lambda name: suite_bytes,
    )
    loop = {
        "params": params,
        "to_device_bytes_per_step": 64,
        "placement": {"model": [loop_device], "inputs": [loop_device]},
    }
    case = bench_overhead.Case("bert-bf16", "bert", "base", "bf16", "cuda", 32, 128, 224)
    return result, loop, case


def test_only_like_with_like_is_compared():
    bench_overhead.check_pair(*_pair(), device="cuda")
    for bad, why in (
        (_pair(params=99), "parameters"),
        (_pair(suite_bytes=128.0), "bytes to the device"),
        (_pair(loop_device="cpu"), "ran on cpu"),
        (_pair(inputs="device"), "inputs=device"),
    ):
        with pytest.raises(RuntimeError, match=why):
            bench_overhead.check_pair(*bad, device="cuda")


class FakeEvent:
    made = 0

    def __init__(self, enable_timing=False):
        assert enable_timing
        FakeEvent.made += 1
        self.recorded = 0

    def record(self):
        self.recorded += 1

    def elapsed_time(self, end):
        return 2.5


def test_cuda_event_timer_makes_its_events_once_not_per_step():
    from runners.worker import measure
    from runners.worker.frameworks.pytorch import CudaEventTimer

    FakeEvent.made = 0
    torch = SimpleNamespace(cuda=SimpleNamespace(Event=FakeEvent))
    timer = CudaEventTimer(torch)
    m = measure.run(
        lambda: None, lambda: None, warmup_steps=1, min_steps=50, min_duration_s=0, max_duration_s=5, timer=timer
    )
    assert FakeEvent.made == 2  # before the measured steps; none inside them
    assert m.device_times_ms == [2.5] * 50


class FakeNvml:
    def __init__(self):
        self.calls, self.used = 0, 100

    def nvmlDeviceGetHandleByIndex(self, index):
        return "handle"

    def nvmlDeviceGetMemoryInfo(self, handle):
        self.calls += 1
        self.used += 10
        return SimpleNamespace(used=self.used * 2**20)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=self.used * 2**20)]

    NVML_CLOCK_SM = 1

    def nvmlDeviceGetClockInfo(self, handle, clock):
        return 1980 if clock == self.NVML_CLOCK_SM else 0

    def nvmlDeviceGetMaxClockInfo(self, handle, clock):
        return 1980


def test_memory_is_read_around_the_steps_by_no_thread(monkeypatch):
    fake = FakeNvml()
    monkeypatch.setattr(nvml, "_nvml", lambda: fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    threads = threading.active_count()
    with nvml.MemorySampler() as sampler:
        assert threading.active_count() == threads  # nothing polls NVML while the steps run
        assert fake.calls == 1
        sampler.sample()  # the worker's reading before the measured steps
        calls = fake.calls
        sum(range(100_000))  # "steps": NVML is not touched
        assert fake.calls == calls
    assert sampler.samples == 3 and fake.calls == 3
    readings = {r["source"]: r["peak_mb"] for r in sampler.readings()}
    assert readings == {"nvml.process_used": 130.0, "nvml.device_used": 130.0}
    assert sampler.sm_clock_mhz == [1980, 1980, 1980] and sampler.sm_clock_max_mhz == 1980


def test_ablations_say_why_they_did_not_run_without_a_gpu_and_rate_with_over_plain():
    out = bare_loop.run(bare_loop.Loop(**{**LOOP, "min_steps": 1}, device="meta", ablation_rounds=1))
    assert set(out["ablations"]) == set(bare_loop.ABLATIONS)
    assert all("needs a CUDA device" in found["skipped"] for found in out["ablations"].values())

    case = bench_overhead.Case("bert-bf16", "bert", "base", "bf16", "cuda", 32, 128, 224)
    case.ablations = {
        "nvml_thread": {"plain_ms": [6.0, 6.2, 6.1], "with_ms": [9.0, 9.3, 9.15], "what": "w"},
        "events_per_step": {"skipped": "NVML not readable"},
    }
    rated, skipped = bench_overhead.ablation_rows(case)
    assert rated["ratio"] == pytest.approx(1.5, rel=1e-3) and rated["ci_low"] <= 1.5 <= rated["ci_high"]
    assert skipped["skipped"] == "NVML not readable" and "ratio" not in skipped
