"""MIG: a hardware partition of the GPU, selected with CUDA_VISIBLE_DEVICES=MIG-<uuid>.
The suite never enables MIG or creates instances: it uses the ones that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from runners.backends import Backend, Check, UsageError, backends
from runners.backends.local import device_used, same_device
from runners.config import BackendConfig

_MIG_LINE = re.compile(r"^\s+MIG\s+(?P<profile>\S+)\s+Device\s+(?P<index>\d+):\s+\(UUID:\s+(?P<uuid>MIG-[^)\s]+)\)")
_GPU_LINE = re.compile(r"^GPU\s+(?P<gpu>\d+):")


@dataclass
class MigConfig(BackendConfig):
    instance: str = "0"  # a MIG UUID (MIG-...) or the index in the order `nvidia-smi -L` lists them


def mig_instances() -> list[dict[str, str]]:
    """Every MIG instance `nvidia-smi -L` lists: gpu, profile, uuid."""
    if not shutil.which("nvidia-smi"):
        return []
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    instances, gpu = [], "?"
    for line in listing.splitlines():
        if match := _GPU_LINE.match(line):
            gpu = match["gpu"]
        elif match := _MIG_LINE.match(line):
            instances.append({"gpu": gpu, "profile": match["profile"], "uuid": match["uuid"]})
    return instances


@backends.register
class MigBackend(Backend):
    name = "mig"
    device = "cuda"
    summary = "MIG instance (hardware partition)"
    config_class = MigConfig
    fork_safe = True  # an instance is chosen by CUDA_VISIBLE_DEVICES, read when CUDA initializes (after the fork)

    def _selected(self) -> dict[str, str] | None:
        instances = mig_instances()
        choice = str(self.config.instance)
        if choice.isdigit() and int(choice) < len(instances):
            return instances[int(choice)]
        return next((i for i in instances if i["uuid"] == choice), None)

    def preflight(self):
        instances = mig_instances()
        if not instances:
            raise UsageError(
                "backend 'mig' found no MIG instance (`nvidia-smi -L` lists none: MIG mode is off, or "
                "no NVIDIA driver); the suite never enables MIG, ask the GPU's administrator"
            )
        if self._selected() is None:
            valid = ", ".join(f"{n} ({i['profile']} on GPU {i['gpu']}: {i['uuid']})" for n, i in enumerate(instances))
            raise UsageError(f"backend.instance={self.config.instance} is no MIG instance here. Valid: {valid}")

    def environment(self):
        selected = self._selected()
        # No instance matched (a dry run shows it): a name that selects no device, never the whole GPU.
        visible = selected["uuid"] if selected else f"MIG-no-such-instance-{self.config.instance}"
        return {"CUDA_VISIBLE_DEVICES": visible, **super().environment()}

    def check_ranks(self, processes):
        if processes > 1:
            raise UsageError(
                f"workload.processes={processes}: backend 'mig' gives a run one MIG instance, and data-parallel "
                "ranks need a device each (NCCL does not run between MIG instances). Valid: workload.processes=1"
            )

    def engagement(self, seen):
        visible = seen.env.get("CUDA_VISIBLE_DEVICES", "")
        got = seen.device.get("uuid") or ""
        checks = [*super().engagement(seen), device_used(seen)]
        if seen.device:
            checks.append(
                Check(
                    "requested_instance",
                    same_device(got, visible),
                    f"the framework got {got or 'a device without a UUID'} ({seen.device.get('name')}), "
                    f"requested {visible}",
                )
            )
        return checks

    def version(self):
        selected = self._selected()
        return f"profile {selected['profile']}" if selected else None
