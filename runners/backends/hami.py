"""HAMi-core: CUDA and NVML interception by a preloaded library (libvgpu.so). Memory
over the quota fails with out-of-memory, cuMemGetInfo and NVML report the quota, and
compute is limited by a token bucket charged per kernel launch.

HAMi-core reads CUDA_DEVICE_MEMORY_LIMIT with strtoul and one optional suffix letter: a
bare number is bytes, `4gb` is 4 bytes, `1.5g` is 1 GiB. The
suite takes `<integer><k|m|g>` only and always writes `<N>m`. HAMi-core also fixes the
limits when its shared region (CUDA_DEVICE_MEMORY_SHARED_CACHE, a fixed path by default)
is first created, and every process attached to one region shares one quota: each run,
and each tenant, gets a region of its own in its run folder, removed afterwards."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from runners.backends import Backend, Check, UsageError, backends
from runners.backends.local import device_used
from runners.config import BackendConfig, _check

SHARED_REGION = "hami-shared-region.cache"
_SIZE = re.compile(r"(?P<number>[0-9]+)(?P<unit>[kKmMgG])")
_UNIT_MIB = {"k": 1 / 1024, "m": 1, "g": 1024}


def hami_size_mib(text: str, key: str = "backend.memory_limit") -> int:
    """`4g`, `4096m`, `4194304k` (any case) -> MiB. Refused: bare numbers (bytes to
    HAMi-core), fractions, other suffixes, less than 1 MiB or not a whole MiB."""
    match = _SIZE.fullmatch(str(text).strip())
    mib = int(match["number"]) * _UNIT_MIB[match["unit"].lower()] if match else 0
    _check(
        match is not None and mib >= 1 and mib == int(mib),
        f"{key} must be a whole number of MiB written <integer><k|m|g>, such as 4g or 4096m, got {text!r} "
        f"(HAMi-core reads a bare number as bytes and ignores what follows one suffix letter)",
    )
    return int(mib)


@dataclass
class HamiConfig(BackendConfig):
    library: str = "/usr/local/vgpu/libvgpu.so"  # HAMi-core's libvgpu.so (LD_PRELOAD)
    memory_limit: Optional[str] = None  # the quota, e.g. 4g or 4096m; written as CUDA_DEVICE_MEMORY_LIMIT=<MiB>m
    sm_limit: Optional[int] = None  # CUDA_DEVICE_SM_LIMIT, percent of the SMs

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.memory_limit is not None:
            hami_size_mib(self.memory_limit)
        _check(
            self.sm_limit is None or 1 <= self.sm_limit <= 100,
            f"backend.sm_limit must be a percentage in 1..100, got {self.sm_limit}",
        )


@backends.register
class HamiBackend(Backend):
    name = "hami"
    device = "cuda"
    summary = "HAMi-core interception (LD_PRELOAD libvgpu.so)"
    config_class = HamiConfig

    def preflight(self):
        if not Path(self.config.library).is_file():
            raise UsageError(
                f"backend 'hami' needs HAMi-core's library, but {self.config.library} does not exist; "
                f"build libvgpu.so from HAMi-core and set backend.library=<path>"
            )

    def environment(self):
        preload = " ".join(filter(None, [self.config.library, os.environ.get("LD_PRELOAD", "")]))
        env = {"LD_PRELOAD": preload}
        if self.config.memory_limit:
            env["CUDA_DEVICE_MEMORY_LIMIT"] = f"{hami_size_mib(self.config.memory_limit)}m"
        if self.config.sm_limit:
            env["CUDA_DEVICE_SM_LIMIT"] = str(self.config.sm_limit)
        return {**env, **super().environment()}

    def run_environment(self, run_dir):
        return {"CUDA_DEVICE_MEMORY_SHARED_CACHE": str(Path(run_dir) / SHARED_REGION)}

    def end_run(self, run_dir):
        (Path(run_dir) / SHARED_REGION).unlink(missing_ok=True)

    def engagement(self, seen):
        library = os.path.realpath(self.config.library)
        mapped = [p for p in seen.mapped if os.path.realpath(p) == library]
        checks = [
            *super().engagement(seen),
            Check("library_mapped", bool(mapped), f"{library} is {'' if mapped else 'not '}mapped into the worker"),
            Check(
                "own_shared_region",
                seen.env.get("CUDA_DEVICE_MEMORY_SHARED_CACHE", "").startswith(str(seen.run_dir or "?")),
                f"CUDA_DEVICE_MEMORY_SHARED_CACHE={seen.env.get('CUDA_DEVICE_MEMORY_SHARED_CACHE')}",
            ),
        ]
        quota = self.memory_quota_mb()
        if quota:
            total = seen.device.get("memory_total_seen_mb")
            checks.append(
                device_used(seen)
                if total is None
                else Check(  # no device: nothing to hold a quota
                    "quota_is_total",
                    abs(total - quota) <= 1.0,
                    f"cudaMemGetInfo total {total:.0f} MiB against the quota {quota:.0f} MiB",
                )
            )
        return checks

    def version(self):
        return Path(self.config.library).resolve().name if Path(self.config.library).exists() else None

    def memory_quota_mb(self):
        return float(hami_size_mib(self.config.memory_limit)) if self.config.memory_limit else None

    def compute_share(self):
        return float(self.config.sm_limit) if self.config.sm_limit else None
