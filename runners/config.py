"""The typed configuration. Hydra composes YAML into these dataclasses, and
`OmegaConf.to_object` constructs them, so every `__post_init__` check runs before
anything is launched. Standard library only: the worker reads the same shape from JSON."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, Optional


class Precision(Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


class TfMode(Enum):
    eager = "eager"
    graph = "graph"  # tf.function
    xla = "xla"  # tf.function(jit_compile=True)


class Compile(Enum):
    none = "none"
    inductor = "inductor"  # torch.compile: fused kernels, fewer launches
    cudagraphs = "cudagraphs"  # CUDA graph capture and replay: one launch per graph


class WorkloadKind(Enum):
    infer = "infer"
    train = "train"
    generate = "generate"  # decoder models: prefill + token-by-token decoding
    train_ddp = "train_ddp"  # data-parallel training over workload.processes processes (torchrun)
    probe = "probe"  # quota probe of the backend (memory and compute), no model
    microbench = "microbench"  # launch, sync, malloc, memcpy and GEMM microbenchmarks, no model


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class ModelConfig:
    name: str = "bert"
    size: Optional[str] = None  # None: the entry's real (default) size
    weights: Optional[str] = None  # local pretrained weights (file or directory); None: random


@dataclass
class WorkloadConfig:
    kind: WorkloadKind = WorkloadKind.infer
    batch_size: int = 8
    seq_len: int = 128  # text models
    image_size: int = 224  # vision models
    precision: Precision = Precision.fp32
    warmup_steps: int = 3
    min_steps: int = 10  # measurement ends once BOTH min_steps and min_duration_s are met,
    min_duration_s: float = 3.0
    max_duration_s: float = 120.0  # or when this much measured time has passed
    # Adaptive: also go on until the 95% confidence interval of the mean step time is
    # narrower than this fraction of the mean (e.g. 0.01), or max_duration_s passes.
    target_ci: Optional[float] = None
    new_tokens: int = 32  # generate: tokens decoded after a prompt of seq_len tokens
    tf_mode: TfMode = TfMode.graph  # TensorFlow models: eager, graph or xla
    compile: Compile = Compile.none  # PyTorch models: none, inductor or cudagraphs
    processes: int = 2  # train_ddp: ranks (one GPU each on a GPU backend, gloo processes on the CPU)

    def __post_init__(self) -> None:
        _check(self.target_ci is None or 0 < self.target_ci < 1,
               f"workload.target_ci must be a fraction in (0, 1) such as 0.01, got {self.target_ci}")
        for name in ("batch_size", "seq_len", "image_size", "min_steps", "new_tokens", "processes"):
            _check(getattr(self, name) >= 1, f"workload.{name} must be >= 1, got {getattr(self, name)}")
        _check(self.warmup_steps >= 0, f"workload.warmup_steps must be >= 0, got {self.warmup_steps}")
        _check(self.min_duration_s >= 0, f"workload.min_duration_s must be >= 0, got {self.min_duration_s}")
        _check(
            self.max_duration_s > 0 and self.max_duration_s >= self.min_duration_s,
            f"workload.max_duration_s must be > 0 and >= workload.min_duration_s "
            f"({self.min_duration_s}), got {self.max_duration_s}",
        )


@dataclass
class BackendConfig:
    """What every backend takes; each backend may extend it (runners/backends/)."""

    name: str = "auto"
    threads: Optional[int] = None  # CPU threads of the worker (intra-op); None: the framework's default
    extra_env: Dict[str, str] = field(default_factory=dict)  # more variables for the worker

    def __post_init__(self) -> None:
        _check(self.threads is None or self.threads >= 1, f"backend.threads must be >= 1, got {self.threads}")


def parse_size_mib(text: str, key: str) -> int:
    """'4g', '4096m', '4G', '512M', '1024' (MiB) -> MiB, as HAMi-core and MPS write sizes."""
    units = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024, "t": 2**20}
    value = str(text).strip().lower()
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = value[len(number):]
    _check(bool(number) and unit in units, f"{key} must be a size such as 4g or 4096m, got {text!r}")
    try:
        mib = float(number) * units[unit]
    except ValueError:
        raise ValueError(f"{key} must be a size such as 4g or 4096m, got {text!r}") from None
    _check(mib >= 1, f"{key} must be at least 1 MiB, got {text!r}")
    return int(mib)


@dataclass
class TrackingConfig:
    name: str = "mlflow"  # "mlflow" or "none"
    uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<results_dir>/mlflow.db
    experiment: str = "vgpu-bench"


@dataclass
class BenchConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0
    label: str = ""  # free text to group runs (a release, an experiment)
    timeout_s: float = 900.0  # hard limit for the whole worker process
    results_dir: str = "results"
    dry_run: bool = False  # print the launch plan instead of running
    tenants: int = 1  # copies of the workload run at once on the same backend
    repeats: int = 1  # the same run this many times, one after another (run-to-run variation)
    resume: bool = False  # skip jobs whose configuration already has a successful result
    profile: bool = False  # after the measured steps, profile a few more (trace, top ops, per-step counts)
    profile_steps: int = 3

    def __post_init__(self) -> None:
        _check(self.timeout_s > 0, f"timeout_s must be > 0, got {self.timeout_s}")
        _check(self.tenants >= 1, f"tenants must be >= 1, got {self.tenants}")
        _check(self.repeats >= 1, f"repeats must be >= 1, got {self.repeats}")
        _check(self.profile_steps >= 1, f"profile_steps must be >= 1, got {self.profile_steps}")
        _check(self.tenants == 1 or self.repeats == 1, "tenants and repeats cannot be combined: choose one")


def config_hash(config: "BenchConfig") -> str:
    """What identifies a job for `resume`: its whole configuration, except how the
    command was asked to run (resume, dry_run) and where results go."""
    import hashlib
    import json

    plain = to_plain(config)
    for key in ("resume", "dry_run", "results_dir", "tracking"):
        plain.pop(key, None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def to_plain(value: Any) -> Any:
    """Dataclasses/enums -> JSON-ready dicts, lists and scalars."""
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "__dataclass_fields__"):
        return {name: to_plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the form MLflow params take."""
    plain = to_plain(value)
    if not isinstance(plain, dict):
        return {prefix: plain}
    out: dict[str, Any] = {}
    for key, item in plain.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(item, dict) and item:
            out.update(flatten(item, name))
        else:
            out[name] = item
    return out
