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
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from runners.backends import Backend, Check, UsageError, backends
from runners.backends.local import total_is
from runners.config import BackendConfig, _check

SHARED_REGION = "hami-shared-region.cache"

# HAMi-core's shared_region_t (src/multiprocess/multiprocess_memory_limit.h, major version 1,
# read on x86_64/aarch64 Linux: size_t 8 bytes, sem_t 32): the offsets of what the check reads.
REGION_MAGIC = 19920718  # initialized_flag once the first process has filled the region in
REGION_SIZE = 2_008_952  # sizeof(shared_region_t); HAMi-core writes one byte past it
REGION_LIMIT = 1600  # uint64_t limit[16], bytes per device (0: none)
REGION_SM_LIMIT = 1728  # uint64_t sm_limit[16], percent (100: none)
REGION_PROCS, REGION_SLOT, REGION_MAX_PROCS = 1856, 1960, 1024  # shrreg_proc_slot_t procs[1024], pid first
REGION_PROC_NUM = 2_008_896  # int proc_num: the slots in use


def read_region(path: Path) -> dict:
    """What HAMi-core wrote in a shared region file: its version, device 0's limits and the
    pids of the processes attached; raises ValueError for a file that is not such a region."""
    data = Path(path).read_bytes()
    if len(data) < REGION_SIZE:
        raise ValueError(f"{len(data)} bytes, not a HAMi-core region of {REGION_SIZE}")
    flag, major, minor = struct.unpack_from("<iII", data, 0)
    if flag != REGION_MAGIC:
        raise ValueError(f"initialized_flag {flag}, not HAMi-core's {REGION_MAGIC}")
    procs = min(max(struct.unpack_from("<i", data, REGION_PROC_NUM)[0], 0), REGION_MAX_PROCS)
    return {
        "version": f"{major}.{minor}",
        "limit_bytes": struct.unpack_from("<Q", data, REGION_LIMIT)[0],
        "sm_limit": struct.unpack_from("<Q", data, REGION_SM_LIMIT)[0],
        "pids": [struct.unpack_from("<i", data, REGION_PROCS + i * REGION_SLOT)[0] for i in range(procs)],
    }


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
            self.own_region(seen),
        ]
        quota = self.memory_quota_mb()
        if quota:
            checks.append(total_is(seen, "quota_is_total", quota, "the quota"))
        return checks

    def own_region(self, seen) -> Check:
        """The region HAMi-core itself created for this run: in the run's folder, with this
        worker among its processes and this run's limits (HAMi-core fixes them at creation)."""
        path = seen.env.get("CUDA_DEVICE_MEMORY_SHARED_CACHE", "")
        if not seen.run_dir or Path(path) != Path(seen.run_dir) / SHARED_REGION:
            return Check("own_shared_region", False, f"CUDA_DEVICE_MEMORY_SHARED_CACHE={path!r}, not this run's")
        try:
            region = read_region(Path(path))
        except FileNotFoundError:
            return Check("own_shared_region", False, f"HAMi-core created no region at {path}")
        except (OSError, ValueError) as exc:
            return Check("own_shared_region", False, f"{path}: {exc}")
        quota = self.memory_quota_mb()
        expected = {"limit_bytes": int(quota * 2**20) if quota else 0, "sm_limit": self.config.sm_limit or 100}
        wrong = [f"{key} {region[key]} (this run: {value})" for key, value in expected.items() if region[key] != value]
        if seen.pid not in region["pids"]:
            wrong.append(f"pid {seen.pid} not among its processes {region['pids'][:8]}")
        return Check(
            "own_shared_region",
            not wrong,
            f"{path} (HAMi-core region {region['version']}): "
            + ("; ".join(wrong) if wrong else f"pid {seen.pid} attached, limit {expected['limit_bytes']} bytes"),
        )

    def version(self):
        return Path(self.config.library).resolve().name if Path(self.config.library).exists() else None

    def memory_quota_mb(self):
        return float(hami_size_mib(self.config.memory_limit)) if self.config.memory_limit else None

    def compute_share(self):
        return float(self.config.sm_limit) if self.config.sm_limit else None
