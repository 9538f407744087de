"""config -> plan: check everything that can be checked without running, and say what
the worker will be asked (the Job). Bad input raises UsageError or UnknownName, printed
as one line; a dry run keeps a failing preflight in the plan instead, to show it."""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import zoo
from runners import suite
from runners.backends import Backend, backends
from runners.backends import create as create_backend
from runners.config import BenchConfig, Compile, DiagnoseConfig, TfMode, config_hash, to_plain
from runners.contracts import GroupRef, Job, ModelRecord, TenantBarrier
from runners.errors import UsageError
from runners.nvml import visible_gpus
from runners.parent import runtimes
from runners.redact import redact_env, redact_tree
from runners.scenarios import Scenario, scenarios
from runners.worker.frameworks import frameworks


@dataclass
class Plan:
    config: Union[BenchConfig, DiagnoseConfig]
    task: str  # workload, or a diagnostic's name
    backend: Backend
    run_name: str
    entry: Optional[zoo.ZooModel] = None  # None for a diagnostic
    scenario: Optional[Scenario] = None
    preflight_error: Optional[str] = None  # only kept for a dry run; otherwise planning raises it

    @property
    def results_dir(self) -> Path:
        return Path(self.config.results_dir).resolve()

    @property
    def ranks(self) -> Optional[int]:
        return self.scenario.ranks(self.config.workload) if self.scenario else None

    @property
    def config_hash(self) -> str:
        """What identifies this plan's job for `resume` (runners/config.config_hash)."""
        return config_hash(self.config, self.task)

    def job(
        self,
        suffix: str = "",
        group: Optional[GroupRef] = None,
        barrier: Optional[TenantBarrier] = None,
        task: Optional[str] = None,
        parity_steps: int = 0,
    ) -> Job:
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{self.run_name}{suffix}-{secrets.token_hex(3)}"
        entry = self.entry
        backend = self.backend.describe()
        run_dir = self.results_dir / "runs" / run_id
        task = task or self.task
        backend["env"] = {**backend["env"], **redact_env(self.backend.run_environment(run_dir))}
        return Job(
            run_id=run_id,
            run_name=self.run_name,
            run_dir=str(run_dir),
            config_hash=config_hash(self.config, task),
            # The worker's environment carries the real values; files and MLflow never do.
            config=redact_tree(to_plain(self.config)),
            model=ModelRecord(entry.name, entry.size, entry.framework, entry.task) if entry else None,
            backend=backend,
            suite=suite.describe(),
            task=task,
            group=group,
            barrier=barrier,
            parity_steps=parity_steps,
        )


def _backend(config: Union[BenchConfig, DiagnoseConfig]) -> tuple[Backend, Optional[str]]:
    backend = create_backend(config.backend, Path(config.results_dir).resolve())
    try:
        backend.preflight()
    except UsageError as exc:
        if not config.dry_run:
            raise
        return backend, str(exc)
    return backend, None


def plan_diagnostic(config: DiagnoseConfig) -> Plan:
    from runners.diagnostics import diagnostics

    diagnostic = diagnostics.get(config.diagnostic.name)
    backend, preflight_error = _backend(config)
    if backend.device != "cuda":
        gpu_backends = ", ".join(n for n in backends.names() if backends.get(n).device == "cuda")
        raise UsageError(
            f"diagnostic={diagnostic.name} measures a GPU backend ({diagnostic.summary}), and backend "
            f"'{backend.name}' has no GPU. Valid: {gpu_backends}"
        )
    return Plan(config, diagnostic.name, backend, f"{diagnostic.name}-{backend.name}", preflight_error=preflight_error)


def model_size(config: BenchConfig, backend: Backend) -> Optional[str]:
    """model.size as the run takes it: `auto` is the entry's real size on a GPU backend, on a
    machine with a GPU (a CPU run there pairs with its GPU runs) and with weights (they have
    the real shapes); else tiny, where the entry has one: the real sizes take seconds a step
    on a CPU, and `make bench` with its defaults is a first try. The plan and the result say
    which size ran."""
    size, entry = config.model.size, zoo.get(config.model.name)
    if size != "auto":
        if size is not None and size not in entry.sizes:
            raise zoo.UnknownName(f"size of model '{entry.name}'", size, ["auto", *entry.sizes])
        return size
    if backend.device == "cuda" or config.model.weights or "tiny" not in entry.sizes or visible_gpus()[0]:
        return entry.default_size
    return "tiny"


def plan(config: BenchConfig) -> Plan:
    scenario = scenarios.get(config.workload.kind)()
    config = scenario.plan(config, create_backend(config.backend, Path(config.results_dir)).device)
    backend, preflight_error = _backend(config)
    kind, compile_mode = config.workload.kind, config.workload.compile
    if compile_mode is Compile.cudagraphs and backend.device != "cuda":
        raise UsageError(
            f"workload.compile=cudagraphs captures CUDA graphs, and backend '{backend.name}' has no GPU. "
            f"Valid here: none, inductor"
        )
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, size=model_size(config, backend)))
    entry = zoo.get(config.model.name)(config.model.size)
    frameworks.get(entry.framework)
    config = runtimes.resolve(config, entry, backend)
    if compile_mode is not Compile.none and entry.framework != "pytorch":
        raise UsageError(
            f"workload.compile applies to PyTorch models; {entry.name} is {entry.framework} "
            f"(use workload.tf_mode=eager|graph|xla)"
        )
    if (
        entry.framework == "tensorflow"
        and config.workload.tf_mode is not TfMode.eager
        and not config.workload.warmup_steps
    ):
        raise UsageError(
            f"workload.tf_mode={config.workload.tf_mode.value} traces (and compiles) on the first step: "
            "it needs workload.warmup_steps >= 1, or workload.tf_mode=eager"
        )
    scenario.check(config, entry, backend)
    try:
        backend.check_framework(entry.framework)
    except UsageError as exc:
        if not config.dry_run:
            raise
        preflight_error = preflight_error or str(exc)
    if config.model.weights and not Path(config.model.weights).exists():
        raise UsageError(
            f"model.weights={config.model.weights} does not exist (a local file or directory; nothing is downloaded)"
        )
    needed = scenario.model_workload or kind  # serve needs a model that infers
    if needed not in entry.workloads:
        able = [n for n in zoo.models.names() if needed in zoo.models.get(n).workloads]
        raise UsageError(
            f"model '{entry.name}' has no workload '{needed}' (it has {', '.join(entry.workloads)}); "
            f"models with {needed}: {', '.join(able)}"
        )
    try:
        shape = zoo.InputShape(seq_len=config.workload.seq_len, image_size=config.workload.image_size)
        entry.check_shape(shape, scenario.extra_tokens(config.workload))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    runtime = config.runtime.name
    name = f"{entry.name}-{kind}-{backend.name}" + (f"-{runtime}" if runtime in runtimes.EXPORTED else "")
    return Plan(config, "workload", backend, name, entry, scenario, preflight_error)
