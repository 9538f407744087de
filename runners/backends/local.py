"""The host CPU and the bare GPU."""

from runners.backends import Backend, UsageError, backends
from runners.nvml import visible_gpus


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
        return chosen(self.config, self.state_dir.with_name(chosen.name), requested=self.name)
