"""The host CPU and the bare GPU."""

from runners.backends import Backend, Check, UsageError, backends
from runners.nvml import visible_gpus


def same_device(uuid: str, visible: str) -> bool:
    """Whether a device UUID is one of CUDA_VISIBLE_DEVICES' entries (GPU-/MIG- prefixes aside)."""
    bare = uuid.lower().removeprefix("gpu-").removeprefix("mig-")
    return any(bare and bare == e.strip().lower().removeprefix("gpu-").removeprefix("mig-") for e in visible.split(","))


@backends.register
class CpuBackend(Backend):
    name = "cpu"
    device = "cpu"
    summary = "host CPU"

    def environment(self):
        # Hide GPUs so that nothing in the worker initializes CUDA by accident.
        return {"CUDA_VISIBLE_DEVICES": "", **super().environment()}

    def engagement(self, seen):
        return [
            *super().engagement(seen),
            Check(
                "no_gpu",
                not seen.device,
                f"a CUDA device was initialized: {seen.device.get('name')}"
                if seen.device
                else "no CUDA device was initialized",
            ),
        ]


@backends.register
class NativeBackend(Backend):
    name = "native"
    device = "cuda"
    summary = "bare NVIDIA GPU"

    def preflight(self):
        gpus, reason = visible_gpus()
        if not gpus:
            raise UsageError(f"backend 'native' needs an NVIDIA GPU, but {reason}. Valid on this machine: cpu, auto")

    def engagement(self, seen):
        checks = [*super().engagement(seen), device_used(seen)]
        visible = seen.env.get("CUDA_VISIBLE_DEVICES", "")
        if seen.device and visible and all(e.strip()[:4].upper() in ("GPU-", "MIG-") for e in visible.split(",")):
            checks.append(
                Check(
                    "visible_device",
                    same_device(seen.device.get("uuid") or "", visible),
                    f"device {seen.device.get('uuid')} against CUDA_VISIBLE_DEVICES={visible}",
                )
            )
        return checks


def device_used(seen) -> Check:
    """A GPU backend's run whose framework never initialized a CUDA device measured something else."""
    if seen.device:
        return Check("device_used", True, f"{seen.device.get('name')} ({seen.device.get('uuid')})")
    if not seen.framework_loaded:
        return Check("device_used", True, "no framework was loaded (a framework-free workload): no device to see")
    return Check("device_used", False, "the framework never initialized a CUDA device")


@backends.register
class AutoBackend(Backend):
    name = "auto"
    device = "cpu"
    summary = "native GPU if visible, else CPU"

    def resolve(self):
        gpus, _ = visible_gpus()
        chosen = NativeBackend if gpus else CpuBackend
        return chosen(self.config, self.state_dir.with_name(chosen.name), requested=self.name)
