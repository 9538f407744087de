"""The typed configuration. Hydra composes YAML into these dataclasses, and
`OmegaConf.to_object` constructs them, so every `__post_init__` check runs before
anything is launched. Standard library only: the worker rebuilds the same dataclasses
from its job file (`from_plain`). Backends and scenarios extend the base classes here
with their own knobs (runners/backends/, runners/scenarios/)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, Optional

from runners.serving.config import Aggressor, Arrival, Search, ServeConfig, SloConfig  # noqa: F401  (re-exported)


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


class Inputs(Enum):
    device = "device"  # the batch is placed on the device once and reused: compute only
    host = "host"  # each step copies its batch from host memory (inference copies its outputs back)
    loader = "loader"  # each step takes its batch from a DataLoader / tf.data pipeline with workers


class Sync(Enum):
    step = "step"  # synchronize after every step: per-step latency, one round trip per step
    window = "window"  # synchronize once per sync_every steps: throughput only, as a training loop


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class ModelConfig:
    name: str = "bert"
    # auto: the entry's real size where this machine has an NVIDIA GPU (or with weights), else
    # tiny (the real sizes take seconds a step on a CPU); None: the real size; or a preset's name.
    size: Optional[str] = "auto"
    weights: Optional[str] = None  # local pretrained weights (file or directory); None: random


@dataclass
class WorkloadConfig:
    """The knobs every scenario takes; a scenario with more extends it (runners/scenarios/)."""

    kind: str = "infer"  # a scenario's name (runners/scenarios/)
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
    tf_mode: TfMode = TfMode.graph  # TensorFlow models: eager, graph or xla
    compile: Compile = Compile.none  # PyTorch models: none, inductor or cudagraphs
    # Where the data lives and when the host waits for the device (docs/overhead_model.md).
    # Each scenario sets the defaults its real programs have (runners/scenarios/).
    inputs: Inputs = Inputs.host
    pinned: bool = False  # host/loader: page-locked host memory (asynchronous, faster copies)
    loader_workers: int = 2  # loader: worker processes (PyTorch) or parallel calls (tf.data)
    sync: Sync = Sync.step
    sync_every: int = 10  # sync=window: steps per synchronized window

    def __post_init__(self) -> None:
        _check(
            self.target_ci is None or 0 < self.target_ci < 1,
            f"workload.target_ci must be a fraction in (0, 1) such as 0.01, got {self.target_ci}",
        )
        for name in ("batch_size", "seq_len", "image_size", "min_steps", "sync_every"):
            _check(getattr(self, name) >= 1, f"workload.{name} must be >= 1, got {getattr(self, name)}")
        _check(self.warmup_steps >= 0, f"workload.warmup_steps must be >= 0, got {self.warmup_steps}")
        _check(self.loader_workers >= 0, f"workload.loader_workers must be >= 0, got {self.loader_workers}")
        _check(
            self.compile is Compile.none or self.warmup_steps >= 1,
            f"workload.compile={self.compile.value} needs workload.warmup_steps >= 1 "
            "(compilation would land in the measured steps)",
        )
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
    # A run whose layer cannot be shown to have engaged is `invalid`; false: a warning only
    # (for people bringing up a new layer, whose evidence the suite cannot read yet).
    require_engagement: bool = True

    def __post_init__(self) -> None:
        _check(self.threads is None or self.threads >= 1, f"backend.threads must be >= 1, got {self.threads}")


def parse_size_mib(text: str, key: str) -> int:
    """'4g', '4096m', '4G', '512M', '1024' (MiB) -> MiB, as HAMi-core and MPS write sizes."""
    units = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024, "t": 2**20}
    value = str(text).strip().lower()
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = value[len(number) :]
    _check(bool(number) and unit in units, f"{key} must be a size such as 4g or 4096m, got {text!r}")
    try:
        mib = float(number) * units[unit]
    except ValueError:
        raise ValueError(f"{key} must be a size such as 4g or 4096m, got {text!r}") from None
    _check(mib >= 1, f"{key} must be at least 1 MiB, got {text!r}")
    return int(mib)


@dataclass
class RuntimeConfig:
    """Which runtime executes the zoo model (docs/runtimes.md): its own framework (auto), or an
    export of its PyTorch model to ONNX, run by ONNX Runtime or converted on to Alibaba's MNN."""

    name: str = "auto"  # auto (the entry's own framework), pytorch, onnxruntime or mnn
    # ONNX Runtime's execution provider (cpu, cuda, tensorrt) or MNN's backend (cpu, cuda,
    # opencl, vulkan): one that does not run makes the run invalid, never CPU figures labelled GPU.
    provider: str = "cpu"
    opset: int = 18  # the ONNX opset of the export

    def __post_init__(self) -> None:
        _check(7 <= self.opset <= 25, f"runtime.opset must be an ONNX opset in 7..25, got {self.opset}")


@dataclass
class TrackingConfig:
    name: str = "mlflow"  # "mlflow" or "none"
    uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<results_dir>/mlflow.db
    experiment: str = "vgpu-bench"


@dataclass
class CommandConfig:
    """What every command shares (configs/shared/default.yaml): where results go, which store."""

    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    results_dir: str = "results"  # configs/shared: $VGPU_BENCH_RESULTS, else results


@dataclass
class BenchConfig(CommandConfig):
    """`make bench` / `make sweep` (configs/bench.yaml)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    seed: int = 0
    label: str = ""  # free text to group runs (a release, an experiment)
    timeout_s: float = 900.0  # hard limit for the whole worker process
    dry_run: bool = False  # print the launch plan instead of running
    tenants: int = 1  # copies of the workload run at once on the same backend
    repeats: int = 1  # the same run this many times, one after another (run-to-run variation)
    resume: bool = False  # skip jobs whose configuration already has a successful result
    profile: bool = False  # after the measured steps, profile a few more (trace, top ops, per-step counts)
    profile_steps: int = 3
    # Fork each run's worker from a process that imported the framework once (per start
    # environment): a sweep pays the imports once. false: every worker starts afresh.
    fork_server: bool = True
    serve: ServeConfig = field(default_factory=ServeConfig)  # workload=serve only

    def __post_init__(self) -> None:
        _check(self.timeout_s > 0, f"timeout_s must be > 0, got {self.timeout_s}")
        _check(self.tenants >= 1, f"tenants must be >= 1, got {self.tenants}")
        _check(self.repeats >= 1, f"repeats must be >= 1, got {self.repeats}")
        _check(self.profile_steps >= 1, f"profile_steps must be >= 1, got {self.profile_steps}")
        _check(self.tenants == 1 or self.repeats == 1, "tenants and repeats cannot be combined: choose one")


@dataclass
class DiagnosticConfig:
    """A backend diagnostic (runners/diagnostics/): no model, no workload."""

    name: str = "probe"  # probe or microbench
    duration_s: float = 5.0  # probe: the compute window (a token bucket charged per launch needs seconds)

    def __post_init__(self) -> None:
        _check(self.duration_s > 0, f"diagnostic.duration_s must be > 0, got {self.duration_s}")


@dataclass
class DiagnoseConfig(CommandConfig):
    """`make probe` / `make microbench` (configs/diagnose.yaml)."""

    diagnostic: DiagnosticConfig = field(default_factory=DiagnosticConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    label: str = ""
    timeout_s: float = 900.0
    dry_run: bool = False


@dataclass
class AnalyzeConfig(CommandConfig):
    """`make compare|regressions|pin-baseline|report` (configs/analyze.yaml). A side selects
    runs with space-separated key=value filters; quote a value with spaces:
    baseline="label='release 2.4' backend=native"."""

    baseline: str = ""
    candidate: str = ""
    tolerance: float = 0.02  # relative: ratios within 1 +- tolerance are equivalent
    wide: bool = False  # every column on the console (the CSV and HTML files always have them)

    def __post_init__(self) -> None:
        _check(0 <= self.tolerance < 1, f"tolerance must be in [0, 1), got {self.tolerance}")


@dataclass
class ParityConfig(CommandConfig):
    """`make parity` (configs/parity.yaml): overrides of each side, on top of the shared ones."""

    baseline: str = ""  # default: backend=native, or backend=cpu without a GPU
    candidate: str = ""
    steps: int = 5  # training steps whose losses are compared

    def __post_init__(self) -> None:
        _check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        _check(bool(self.candidate.strip()), 'parity needs a candidate, e.g. candidate="backend=vgpu"')


@dataclass
class AbConfig(CommandConfig):
    """`make ab` (configs/ab.yaml): overrides of each side, on top of the shared ones; the sides'
    runs alternate, baseline first, `repeats` of each."""

    baseline: str = ""
    candidate: str = ""
    repeats: int = 3  # runs per side
    tolerance: float = 0.02
    wide: bool = False

    def __post_init__(self) -> None:
        _check(
            self.repeats >= 2,
            f"make ab needs repeats>=2 (got {self.repeats}): with one run a side, drift and difference are one",
        )
        _check(0 <= self.tolerance < 1, f"tolerance must be in [0, 1), got {self.tolerance}")
        _check(bool(self.candidate.strip()), 'make ab needs a candidate, e.g. candidate="backend=vgpu"')


@dataclass
class DemoConfig(CommandConfig):
    """`make demo` (configs/demo.yaml): a short real inference with the zoo alone."""

    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="resnet50"))
    input: str = ""  # an image file (vision models) or a sentence (text models)

    def __post_init__(self) -> None:
        _check(bool(self.input), "the demo needs input=<an image file or a sentence>")


@dataclass
class SyncConfig(CommandConfig):
    """`make sync` / `make ingest DIR=...` (configs/sync.yaml)."""

    dir: Optional[str] = None  # ingest every result file under this directory; None: the unsynced ones


# `make bench-overhead`'s cases: name -> (zoo model, workload.precision)
OVERHEAD_CASES = {"bert-fp32": ("bert", "fp32"), "bert-bf16": ("bert", "bf16"), "resnet50-fp32": ("resnet50", "fp32")}


@dataclass
class OverheadConfig(CommandConfig):
    """`make bench-overhead` (configs/bench_overhead.yaml): a benchmark of the suite itself,
    a real `make bench` worker against a hand-written loop in a process of its own."""

    backend: BackendConfig = field(default_factory=BackendConfig)  # cpu, native or auto: where both sides run
    sizes: str = "auto"  # tiny | full | auto: tiny on the CPU, full (bert-base 32x128, resnet50 32) on a GPU
    cases: list[str] = field(default_factory=lambda: ["bert-fp32", "bert-bf16", "resnet50-fp32"])
    rounds: int = 3  # pairs of (suite, loop) runs, interleaved, the first side alternating
    seconds: float = 1.0  # measured seconds per run, each side alike
    warmup_steps: int = 5
    min_steps: int = 10
    seed: int = 0
    timeout_s: float = 600.0  # per process, each side alike
    # > 0: the first round's loop then alternates, this many times, the plain loop with the
    # loop plus each thing the worker used to do in its window (NVML thread, events per step):
    # what each costs on this GPU (overhead.json "ablations"). GPU only; 0: none.
    ablation_rounds: int = 0
    fork_server: bool = True  # the suite's side as `make bench` starts it (false: every worker afresh)

    def __post_init__(self) -> None:
        _check(self.rounds >= 1 and self.seconds > 0, "rounds must be >= 1 and seconds > 0")
        _check(self.warmup_steps >= 0 and self.min_steps >= 1, "warmup_steps must be >= 0 and min_steps >= 1")
        _check(
            self.backend.name in ("cpu", "native", "auto"),
            f"bench-overhead runs on backend=cpu, native or auto, got {self.backend.name!r}",
        )
        _check(self.sizes in ("tiny", "full", "auto"), f"sizes must be tiny, full or auto, got {self.sizes!r}")
        unknown = [c for c in self.cases if c not in OVERHEAD_CASES]
        _check(
            bool(self.cases) and not unknown,
            f"unknown case(s) {unknown or '(none given)'}; valid: {', '.join(OVERHEAD_CASES)}",
        )
        _check(self.timeout_s > 0, f"timeout_s must be > 0, got {self.timeout_s}")
        _check(self.ablation_rounds >= 0, f"ablation_rounds must be >= 0, got {self.ablation_rounds}")


@dataclass
class GpuCheckConfig(CommandConfig):
    """`make gpu-check` (configs/gpu_check.yaml): every GPU path, each item within its budget."""

    dry_run: bool = False  # list the plan (works without a GPU)
    only: list[str] = field(default_factory=list)  # item names; empty: all
    skip: list[str] = field(default_factory=list)
    out: Optional[str] = None  # None: <results_dir>/reference/<gpu name>
    hami_lib: Optional[str] = None  # HAMi-core's libvgpu.so for the hami items; None: build/hami-core/libvgpu.so
    lupine_dir: Optional[str] = None  # LUPINE's build (client/, server/) for the lupine items; None: build/lupine


# Knobs added after runs were recorded: left out at their defaults, so those runs keep their hashes.
_ADDED_LATER = {("serve", "max_send_delay_ms"): ServeConfig().max_send_delay_ms}


def config_hash(config: CommandConfig, task: str = "workload") -> str:
    """What identifies a job for `resume`: its task and its whole configuration (any command's:
    a workload's BenchConfig, a diagnostic's DiagnoseConfig), except how the command was asked
    to run (resume, dry_run, fork_server) and where results go. A workload's hash is what it always was."""
    import hashlib
    import json

    plain = to_plain(config)
    for key in ("resume", "dry_run", "results_dir", "tracking", "fork_server"):
        plain.pop(key, None)
    if (plain.get("workload") or {}).get("kind") != "serve":
        plain.pop("serve", None)  # only serve reads it: other runs keep the hashes they had
    if plain.get("runtime", {}).get("name") in ("auto", "pytorch", "tensorflow"):
        plain.pop("runtime", None)  # the model's own framework, as before runtimes existed: the same hashes
    for (section, key), default in _ADDED_LATER.items():
        if (plain.get(section) or {}).get(key, default) == default:
            (plain.get(section) or {}).pop(key, None)
    model = plain.get("model") or {}
    if model.get("size") is not None and model["size"] == _real_size(model.get("name")):
        model["size"] = None  # the real size, named by model.size=auto's resolution: the hash it had as null
    if task != "workload":
        plain["task"] = task  # parity on a workload's config is not that workload's result
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def _real_size(model: Optional[str]) -> Optional[str]:
    import zoo

    return zoo.get(model).default_size if model in zoo.models.names() else None


def to_plain(value: Any) -> Any:
    """Dataclasses/enums -> JSON-ready dicts, lists and scalars."""
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
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


def from_plain(cls: Any, data: Any, classes: Optional[Dict[tuple, type]] = None, path: tuple = ()) -> Any:
    """JSON-ready data -> an instance of `cls` (dataclasses, enums, Optional, list, dict),
    the inverse of `to_plain`; `classes` swaps in a subclass at a path (a backend's own
    config). Constructing the dataclasses runs their `__post_init__` checks again."""
    import typing

    cls = (classes or {}).get(path, cls)
    if data is None or cls is Any:
        return data
    origin, args = typing.get_origin(cls), typing.get_args(cls)
    if origin is typing.Union:
        options = [a for a in args if a is not type(None)]
        return from_plain(options[0], data, classes, path) if len(options) == 1 else data
    if origin in (list, typing.List):
        return [from_plain(args[0] if args else Any, v, classes, path) for v in data]
    if origin in (dict, typing.Dict):
        return {k: from_plain(args[1] if args else Any, v, classes, (*path, k)) for k, v in data.items()}
    if isinstance(cls, type) and issubclass(cls, Enum):
        return cls(data)
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: from_plain(hints[k], v, classes, (*path, k)) for k, v in data.items() if k in names})
    if cls is float and isinstance(data, int):
        return float(data)
    return data
