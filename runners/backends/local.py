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
    fork_safe = True  # no layer: a forked worker starts as a fresh one would

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
    fork_safe = True  # the fork server never initializes CUDA: each child creates its own context

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
    if seen.device and (seen.device.get("name") or seen.device.get("memory_total_seen_mb") is not None):
        return Check("device_used", True, f"{seen.device.get('name')} ({seen.device.get('uuid')})")
    if seen.device:  # a runtime said it ran on a GPU, and nothing of that GPU could be read
        return Check(
            "device_used",
            False,
            f"{seen.device.get('source')}: no device could be read ({seen.device.get('error', 'no name, no total')})",
        )
    if not seen.framework_loaded:
        return Check("device_used", True, "no framework was loaded (a framework-free workload): no device to see")
    return Check("device_used", False, "the framework never initialized a CUDA device")


def total_is(seen, name: str, quota: float, what: str) -> Check:
    """The device memory the worker's runtime reports (cudaMemGetInfo) is the configured
    `quota`: what shows that a layer which sets a memory size applied it. With no device
    seen at all, whether one was due (device_used) decides."""
    total = seen.device.get("memory_total_seen_mb")
    if total is None:
        if not seen.device:
            return device_used(seen)
        return Check(
            name, False, f"the runtime's device total could not be read, so {what} {quota:.0f} MiB is unproven"
        )
    return Check(
        name, abs(total - quota) <= 1.0, f"cudaMemGetInfo total {total:.0f} MiB against {what} {quota:.0f} MiB"
    )


@backends.register
class AutoBackend(Backend):
    name = "auto"
    device = "cpu"
    summary = "native GPU if visible, else CPU"

    def resolve(self):
        gpus, _ = visible_gpus()
        chosen = NativeBackend if gpus else CpuBackend
        return chosen(self.config, self.state_dir.with_name(chosen.name), requested=self.name)
