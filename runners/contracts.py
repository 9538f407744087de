"""The typed contracts that cross the process boundary, each once: a `Job` (parent ->
worker, job.json) and a `Result` (worker -> everything else, result.json), plus the
`GroupRecord` of a group of runs (tenants, repeats, a scaling reference, a parity pair).
docs/results_schema.md documents every field; tests/unit/test_schema_doc.py keeps the two
in step. Standard library and runners.config only: the worker may run where nothing but
the framework is, and no registry (backends, scenarios) is imported from here, so every
module may import the contract (runners/worker/job_config.py types a job's config).
One module on purpose (about 400 lines): every record that crosses a process boundary is
here, so the whole contract reads in one sitting."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

from runners.config import from_plain, to_plain

SCHEMA_VERSION = 2
RESULT_FILE, LOG_FILE, JOB_FILE, LAUNCH_FILE = "result.json", "worker.log", "job.json", "launch.json"
STOP_FILE = "stop.json"  # why the parent stopped the worker, read by the worker's SIGTERM handler
SUCCESS, FAILED = "success", "failed"
INVALID = "invalid"  # it ran, but the backend's layer could not be shown to have engaged: never a success


@dataclass(frozen=True)
class Metric:
    """A metric's stable name (the MLflow key) and its unit. Declaring one registers it:
    the modules that produce a figure declare it (runners/names.py for the common ones,
    each scenario and diagnostic for its own), and nothing else lists names."""

    name: str
    unit: str
    doc: str = field(default="", compare=False)
    registry: ClassVar[dict[str, "Metric"]] = {}

    def __post_init__(self) -> None:
        known = Metric.registry.setdefault(self.name, self)
        if known != self:
            raise ValueError(f"metric {self.name!r} declared twice with different units ({known.unit}, {self.unit})")


@dataclass
class Quantity:
    value: float
    unit: str


@dataclass
class ErrorRecord:
    type: str  # the exception class, or Timeout, WorkerExited, WorkerKilled
    message: str
    traceback: str = ""


@dataclass
class ModelRecord:
    name: str
    size: Optional[str]
    framework: str
    task: str
    params: Optional[int] = None


@dataclass
class DeviceRecord:
    kind: str  # cpu or cuda
    name: Optional[str] = None


@dataclass
class MemoryReading:
    source: str  # which counter: torch.cuda.max_memory_allocated, nvml.process_used, rusage.ru_maxrss...
    peak_mb: float
    scope: str


@dataclass
class Measurement:
    warmup_steps: int
    steps: int
    duration_s: float
    reached_minimums: bool
    window: list[float]
    ci_rel: Optional[float]
    step_times_ms: list[float]
    device_times_ms: Optional[list[float]] = None
    final_loss: Optional[float] = None
    sync: str = "step"  # step: one time per step; window: one time per steps_per_time steps
    steps_per_time: int = 1  # steps behind each entry of step_times_ms (their mean)
    inputs: str = "device"  # where each step's batch came from: device, host, loader (none: no device)
    pinned: bool = False  # page-locked host memory was used for the copies


@dataclass
class GroupRef:
    """Which group a run belongs to, and its place in it."""

    kind: str  # tenants, repeats, scaling, probe_reference, parity
    id: str
    role: str  # alone or tenant (tenants), repeat, reference or scaled (scaling), baseline or candidate (parity)
    index: Optional[int] = None
    of: Optional[int] = None


@dataclass
class Check:
    """One piece of evidence that the backend's layer engaged (or did not)."""

    name: str
    passed: bool
    detail: str


@dataclass
class Evidence:
    """What the worker itself saw of its backend, and the engagement verdict drawn from it."""

    env: dict[str, str]  # each variable the backend set, as the worker saw it (secret values redacted)
    libraries: dict[str, str]  # CUDA-related library -> the file mapped into the worker
    device: dict[str, Any]  # the device the framework got: name, uuid, mig, memory_total_mb (its own report)
    checks: list[Check]
    engaged: bool  # every check passed
    verdict: str  # "engaged", or why not: the failed checks
    required: bool = True  # backend.require_engagement: False turns a failed check into a warning


@dataclass
class TenantBarrier:
    """Every tenant of a group starts measuring at the same moment (a file barrier)."""

    dir: str
    timeout_s: float


@dataclass
class Environment:
    host: str = ""
    platform: str = ""
    python: str = ""
    cpu_model: str = ""
    cpu_count: Optional[int] = None
    packages: dict[str, str] = field(default_factory=dict)
    package_sources: dict[str, str] = field(default_factory=dict)
    gpu_libraries_loaded: list[str] = field(default_factory=list)
    suite: dict[str, str] = field(default_factory=dict)
    framework: dict[str, Any] = field(default_factory=dict)
    gpus: list[dict[str, Any]] = field(default_factory=list)


def _write_json(path: Path, plain: dict[str, Any]) -> None:
    """Atomic: a reader sees the old file or the whole new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(plain, handle, indent=2, sort_keys=True, allow_nan=False, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Job:
    """What the worker is asked to do. `task` is `workload` (a timed scenario), `parity`
    (seeded outputs and a loss curve) or a diagnostic (`probe`, `microbench`); `config` is
    that task's command config (a BenchConfig, or a DiagnoseConfig without model or workload)."""

    run_id: str
    run_name: str
    run_dir: str
    config_hash: str
    config: dict[str, Any]  # the typed config as plain JSON, secrets redacted (the worker's environment has them)
    model: Optional[ModelRecord]
    backend: dict[str, Any]  # the backend's own description (backends.Backend.describe)
    suite: dict[str, str]
    task: str = "workload"
    group: Optional[GroupRef] = None
    barrier: Optional[TenantBarrier] = None
    parity_steps: int = 0
    spawned_at: float = 0.0

    def write(self, path: Path) -> None:
        _write_json(path, to_plain(self))

    @classmethod
    def load(cls, path: Path) -> "Job":
        return from_plain(cls, json.loads(Path(path).read_text()))


@dataclass
class Result:
    run_id: str
    run_name: str
    config_hash: str
    task: str
    workload: str
    model: Optional[ModelRecord]
    backend: dict[str, Any]
    device: DeviceRecord
    config: dict[str, Any]
    status: str = FAILED  # until the work succeeds
    error: Optional[ErrorRecord] = None
    metrics: dict[str, Quantity] = field(default_factory=dict)
    memory: list[MemoryReading] = field(default_factory=list)
    memory_peak_source: Optional[str] = None
    measurement: Optional[Measurement] = None
    environment: Environment = field(default_factory=Environment)
    group: Optional[GroupRef] = None
    evidence: Optional[Evidence] = None
    details: dict[str, Any] = field(default_factory=dict)  # per scenario or diagnostic: profile, ddp, probe...
    started_at: float = 0.0
    finished_at: Optional[float] = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def for_job(cls, job: Job) -> "Result":
        """The skeleton of a result for `job`, before anything ran."""
        return cls(
            run_id=job.run_id,
            run_name=job.run_name,
            config_hash=job.config_hash,
            task=job.task,
            workload=subject(job),
            model=job.model,
            backend=job.backend,
            device=DeviceRecord(job.backend["device"]),
            config=job.config,
            group=job.group,
            started_at=job.spawned_at or time.time(),
        )

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS

    def value(self, name: str, default: Optional[float] = None) -> Optional[float]:
        quantity = self.metrics.get(name)
        return quantity.value if quantity else default

    def set(self, metric: Metric, value: Optional[float]) -> None:
        """Record a figure; an absent or non-finite one is left out, never written as 0."""
        if value is not None and math.isfinite(float(value)):
            self.metrics[metric.name] = Quantity(float(value), metric.unit)

    def fail(self, error_type: str, message: str, traceback_tail: str = "") -> "Result":
        self.status = FAILED
        self.error = ErrorRecord(error_type, message, traceback_tail)
        self.finished_at = time.time()
        return self

    @property
    def display_name(self) -> str:
        """The run name, with the run's place in its group (-alone, -t<i>, -r<i>...)."""
        return self.run_name + group_suffix(self.group)

    def write(self, path: Path) -> None:
        _write_json(path, to_plain(self))

    @classmethod
    def load(cls, path: Path) -> "Result":
        """Version 2 as written; version 1 files (before typed contracts) are converted."""
        plain = json.loads(Path(path).read_text())
        version = plain.get("schema_version")
        if version == 1:
            plain = _from_version_1(plain)
        elif version != SCHEMA_VERSION:
            raise ValueError(f"{path}: schema_version {version!r}, this suite reads 1 and {SCHEMA_VERSION}")
        return from_plain(cls, plain)


def subject(job: Job) -> str:
    """What a job measures, for a result's `workload`: the workload's kind (workload, parity),
    else the task itself (a diagnostic's name)."""
    return (job.config.get("workload") or {}).get("kind") or job.task


def group_suffix(group: Optional[GroupRef]) -> str:
    if not group:
        return ""
    if group.role == "alone":
        return "-alone"
    if group.role == "tenant":
        return f"-t{group.index}"
    if group.role == "repeat":
        return f"-r{group.index}"
    return f"-{group.role}" if group.kind in ("scaling", "parity", "probe_reference") else ""


_V1_DETAILS = ("profile", "probe", "microbench", "parity", "ddp", "mfu_basis")


def _from_version_1(old: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 result as schema 2: metrics carry their units, tenant/repeat become the
    group, the per-kind sections move under `details`."""
    new = {k: v for k, v in old.items() if k not in (*_V1_DETAILS, "units", "tenant", "repeat", "worker_exit_code")}
    units = old.get("units") or {}
    new["metrics"] = {k: {"value": v, "unit": units.get(k, "")} for k, v in (old.get("metrics") or {}).items()}
    new["details"] = {k: old[k] for k in _V1_DETAILS if old.get(k) is not None}
    workload = old.get("workload", "")
    new["task"] = workload if workload in ("probe", "microbench") else ("parity" if old.get("parity") else "workload")
    tenant, repeat = old.get("tenant"), old.get("repeat")
    if tenant:
        new["group"] = {
            "kind": "tenants",
            "id": tenant["group"],
            "role": tenant["role"],
            "index": tenant.get("index"),
            "of": tenant.get("of"),
        }
    elif repeat:
        new["group"] = {
            "kind": "repeats",
            "id": repeat["group"],
            "role": "repeat",
            "index": repeat["index"],
            "of": repeat["of"],
        }
    environment = dict(old.get("environment") or {})
    new["environment"] = {k: v for k, v in environment.items() if k in Environment.__dataclass_fields__}
    new["config_hash"] = old.get("config_hash") or ""
    new["schema_version"] = SCHEMA_VERSION
    return new


@dataclass
class GroupMember:
    run_id: str
    role: str
    index: Optional[int] = None
    status: str = FAILED


@dataclass
class GroupRecord:
    """The figures that belong to a group of runs, never to one of its runs:
    results/groups/<id>.json, and the group's MLflow parent run."""

    kind: str
    id: str
    name: str
    members: list[GroupMember]
    status: str  # success when every member succeeded and the figures could be computed
    metrics: dict[str, Quantity] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # per-member figures, verdicts
    created_at: float = field(default_factory=time.time)
    schema_version: int = SCHEMA_VERSION

    def set(self, metric: Metric, value: Optional[float]) -> None:
        if value is not None and math.isfinite(float(value)):
            self.metrics[metric.name] = Quantity(float(value), metric.unit)

    def value(self, name: str, default: Optional[float] = None) -> Optional[float]:
        quantity = self.metrics.get(name)
        return quantity.value if quantity else default

    def path(self, results_dir: Path) -> Path:
        return Path(results_dir) / "groups" / f"{self.id}.json"

    def write(self, results_dir: Path) -> Path:
        path = self.path(results_dir)
        _write_json(path, to_plain(self))
        return path

    @classmethod
    def load(cls, path: Path) -> "GroupRecord":
        return from_plain(cls, json.loads(Path(path).read_text()))


def find_successful(results_dir: Path, config_hash: str) -> Optional[Path]:
    """The run directory of a successful result of this configuration, if any (for resume)."""
    for path in sorted(Path(results_dir).glob(f"runs/*/{RESULT_FILE}")):
        try:
            plain = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if plain.get("config_hash") == config_hash and plain.get("status") == SUCCESS:
            return path.parent
    return None
