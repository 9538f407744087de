"""Backends: how a worker process gets its device. A backend is the environment applied
to the worker before the framework initializes, a preflight check, and what it records
in the result. Add one by subclassing Backend and registering it."""
from __future__ import annotations

from typing import Any, ClassVar

from runners.config import BackendConfig
from runners.errors import UsageError
from runners.nvml import visible_gpus
from runners.redact import redact_env
from zoo.registry import Registry


class Backend:
    name: ClassVar[str]
    device: ClassVar[str]  # what the framework runs on: "cpu" or "cuda"
    summary: ClassVar[str]

    def __init__(self, config: BackendConfig, requested: str | None = None):
        self.config = config
        self.requested = requested or config.name

    def resolve(self) -> "Backend":
        """The concrete backend (auto picks one)."""
        return self

    def preflight(self) -> None:
        """Raise UsageError when this machine cannot run the backend."""

    def environment(self) -> dict[str, str]:
        """Variables set in the worker's environment."""
        env = {}
        if self.config.threads:
            env.update(OMP_NUM_THREADS=str(self.config.threads), MKL_NUM_THREADS=str(self.config.threads))
        env.update({k: str(v) for k, v in self.config.extra_env.items()})
        return env

    def describe(self) -> dict[str, Any]:
        """The backend's part of the fingerprint (secret values redacted)."""
        return {"name": self.name, "requested": self.requested, "device": self.device,
                "kind": self.summary, "env": redact_env(self.environment())}


backends: Registry[type[Backend]] = Registry("backend")


@backends.register
class CpuBackend(Backend):
    name = "cpu"
    device = "cpu"
    summary = "host CPU"

    def environment(self):
        # Hide GPUs so that nothing in the worker initializes CUDA by accident.
        return {"CUDA_VISIBLE_DEVICES": "", **super().environment()}


@backends.register
class NativeBackend(Backend):
    name = "native"
    device = "cuda"
    summary = "bare NVIDIA GPU"

    def preflight(self):
        gpus, reason = visible_gpus()
        if not gpus:
            raise UsageError(f"backend 'native' needs an NVIDIA GPU, but {reason}. Valid on this machine: cpu, auto")


@backends.register
class AutoBackend(Backend):
    name = "auto"
    device = "cpu"
    summary = "native GPU if visible, else CPU"

    def resolve(self):
        gpus, _ = visible_gpus()
        chosen = NativeBackend if gpus else CpuBackend
        return chosen(self.config, requested=self.name)


def get(config: BackendConfig) -> Backend:
    """The resolved, preflighted backend for `config` (UsageError / UnknownName otherwise)."""
    backend = backends.get(config.name)(config).resolve()
    backend.preflight()
    return backend
