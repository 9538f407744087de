"""Planning a run's runtime (runtime=auto|pytorch|onnxruntime|mnn): which adapter runs the
zoo entry, and the one-line refusals for what it cannot do, before anything is launched.
The parent imports neither runtime: what a runtime can do is written here, and what it
actually did (the provider or backend that ran) is the worker's to prove (docs/runtimes.md)."""

from __future__ import annotations

import dataclasses

import zoo
from runners.config import BenchConfig, Compile, Inputs, Precision
from runners.errors import UsageError

# Runtimes that run an export of the PyTorch model: inference only, fp32, batch from host memory.
EXPORTED = ("onnxruntime", "mnn")
OWN = ("auto", "pytorch", "tensorflow", "python")
# The providers (ONNX Runtime) or backends (MNN) each runtime can be asked for; those off the CPU
# need a GPU backend, and a build of the runtime that has them (checked in the worker).
PROVIDERS = {
    "onnxruntime": {"cpu": False, "cuda": True, "tensorrt": True},
    "mnn": {"cpu": False, "cuda": True, "opencl": True, "vulkan": True},
}


def resolve(config: BenchConfig, entry: zoo.ZooModel, backend) -> BenchConfig:
    """`config` with its runtime resolved (auto: the entry's own framework), or UsageError;
    `backend` is the resolved backend (its name and device)."""
    runtime = config.runtime
    name = entry.framework if runtime.name == "auto" else runtime.name
    valid = [*OWN, *EXPORTED]
    if name not in valid:
        raise UsageError(f"unknown runtime '{runtime.name}'. Valid: {', '.join(valid)}")
    if name not in entry.runtimes():
        able = [n for n in zoo.list() if name in zoo.get(n).runtimes()]
        raise UsageError(
            f"model '{entry.name}' does not run on {name} (it runs on {', '.join(entry.runtimes())}); "
            f"models on {name}: {', '.join(able) or 'none'}"
        )
    if name in EXPORTED:
        _check_exported(config, name, backend.name, backend.device)
    elif runtime.provider != "cpu":
        raise UsageError(
            f"runtime.provider applies to runtime=onnxruntime|mnn; {name} runs on the backend's device "
            f"(choose it with backend=...)"
        )
    return dataclasses.replace(config, runtime=dataclasses.replace(runtime, name=name))


def _check_exported(config: BenchConfig, name: str, backend: str, device: str) -> None:
    workload, provider = config.workload, config.runtime.provider
    providers = PROVIDERS[name]
    if provider not in providers:
        raise UsageError(f"unknown runtime.provider '{provider}' for {name}. Valid: {', '.join(providers)}")
    if providers[provider] and device != "cuda":
        raise UsageError(
            f"runtime.provider={provider} runs on a GPU, and backend '{backend}' has none. "
            f"Valid here: runtime.provider=cpu"
        )
    if not providers[provider] and device == "cuda":
        gpu = ", ".join(p for p, on_gpu in providers.items() if on_gpu)
        raise UsageError(
            f"runtime.provider=cpu would measure the CPU under a GPU backend ('{backend}'). "
            f"Valid: runtime.provider={gpu}, or backend=cpu"
        )
    if workload.kind != "infer":
        raise UsageError(f"runtime={name} runs inference only (workload=infer); workload={workload.kind} needs pytorch")
    if workload.precision is not Precision.fp32:
        raise UsageError(
            f"runtime={name} runs the fp32 export; workload.precision={workload.precision.value} needs pytorch"
        )
    if workload.compile is not Compile.none:
        raise UsageError(f"workload.compile applies to runtime=pytorch; {name} optimizes its own graph")
    if workload.inputs is not Inputs.host:
        raise UsageError(
            f"runtime={name} takes each batch from host memory and returns its outputs there; "
            f"workload.inputs={workload.inputs.value} is not supported. Valid: workload.inputs=host"
        )
    if config.profile:
        raise UsageError(f"profile=true uses the PyTorch profiler; runtime={name} has no profile here")
