"""Compiled modes prove they ran: torch's own counters, read by the worker's CompileWatch,
make a requested torch.compile mode that fell back to eager an `invalid` run (CPU)."""

import pytest

torch = pytest.importorskip("torch")

from runners.worker.evidence import framework_details  # noqa: E402
from runners.worker.frameworks.pytorch import CompileWatch, TorchFramework  # noqa: E402


class Tiny(torch.nn.Module):
    def __init__(self, graph_break: bool = False):
        super().__init__()
        self.linear, self.graph_break = torch.nn.Linear(8, 8), graph_break

    def forward(self, x):
        y = self.linear(x).relu()
        if self.graph_break:
            torch._dynamo.graph_break()
        return self.linear(y)


def _run(mode: str, model: torch.nn.Module, calls: int = 4, warmup: int = 1) -> TorchFramework:
    framework = TorchFramework("cpu", "fp32", 1, compile=mode)
    compiled = framework._compiled(model, warmup)
    with torch.inference_mode():
        for _ in range(calls):
            compiled(torch.randn(2, 8))
    return framework


def _check(framework: TorchFramework):
    [check] = framework.runtime_checks()
    assert check.name == "compiled_mode_ran"
    return check


def test_cudagraphs_that_silently_ran_eager_is_a_failed_check():
    # on a CPU model the `cudagraphs` backend logs a skip and runs eager: exactly the silent fallback
    framework = _run("cudagraphs", Tiny())
    record = framework_details(framework)["compile"]
    assert record["mode"] == "cudagraphs" and record["cudagraph_replays"] == 0
    assert record["fallback"].startswith("CUDA graphs skipped 1 time(s), ran eager: skipping cudagraphs due to")
    check = _check(framework)
    assert not check.passed and "compile=cudagraphs fell back: CUDA graphs skipped" in check.detail


def test_a_model_dynamo_never_compiles_is_a_fallback():
    model = Tiny()
    model.forward = torch._dynamo.disable(model.forward)  # every call runs eager, without an error
    framework = _run("inductor", model)
    record = framework.compile_record()
    assert record["graphs"] == 0 and record["fallback"] == "dynamo compiled no graph: the model ran eager"
    assert not _check(framework).passed


def test_a_compiled_model_never_called_is_a_fallback():
    framework = TorchFramework("cpu", "fp32", 1, compile="inductor")  # generate/decode steps use the eager model
    assert framework.compile_record()["fallback"] == "this workload's step does not use the compiled model"
    assert not _check(framework).passed
    assert TorchFramework("cpu", "fp32", 1).runtime_checks() == []  # compile=none: nothing to prove
    assert framework_details(TorchFramework("cpu", "fp32", 1)) == {}


def test_graph_breaks_are_recorded_and_do_not_fail_the_check():
    framework = _run("inductor", Tiny(graph_break=True), calls=3)
    record = framework.compile_record()
    assert record["graph_breaks"] == 1 and record["graphs"] == 2 and record["recompiles"] == 0
    assert record["graph_break_reasons"] == ["Call to `torch._dynamo.graph_break()`"]
    assert record["calls"] == 3 and record["measured_calls"] == 2 and record["cudagraph_replays"] is None
    check = _check(framework)
    assert check.passed and "2 graph(s), 1 graph break(s), 0 recompile(s) over 2 measured calls" in check.detail


def test_cuda_graph_fallbacks_from_the_counts():
    watch = CompileWatch(torch, "cudagraphs", warmup_calls=1)
    grown = {**watch.since(), "graphs": 1}
    record = {"calls": 4, "graphs": 1}
    # call 1 compiled and warmed up eagerly; the measured ones each replayed a graph
    assert watch._fallback(record, grown, [(0, 1), (0, 1), (0, 1)]) is None
    # a measured call that neither compiled nor replayed ran eager
    assert watch._fallback(record, grown, [(0, 1), (0, 0), (0, 1)]) == "1 of 3 measured calls replayed no CUDA graph"
    # a new shape compiles (and warms up eagerly) during measurement: a recompile, not a fallback
    assert watch._fallback(record, grown, [(0, 1), (1, 0), (0, 1)]) is None
    limit = {**grown, "graph_break": {"Dynamo recompile limit exceeded\n  Explanation: ...": 1}}
    assert watch._fallback(record, limit, [(0, 1)]) == "dynamo hit its recompile limit: later calls ran eager"
    failed = {**grown, "frames": 2, "frames_ok": 1}
    assert watch._fallback(record, failed, [(0, 1)]) == "dynamo could not compile 1 of 2 frames: they ran eager"
