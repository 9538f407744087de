"""config -> plan: check everything that can be checked without running, and describe
the worker's job as plain JSON."""
from __future__ import annotations

import dataclasses
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import zoo
from runners import fingerprint
from runners.backends import Backend, backends
from runners.backends import create as create_backend
from runners.config import BenchConfig, WorkloadKind, config_hash, to_plain
from runners.errors import UsageError
from runners.redact import redact_tree
from runners.frameworks import frameworks


@dataclass
class Job:
    config: BenchConfig
    entry: Optional[zoo.ZooModel]  # None for the quota probe
    backend: Backend
    run_name: str
    preflight_error: Optional[str] = None  # only kept for a dry run; otherwise planning raises it

    @property
    def results_dir(self) -> Path:
        return Path(self.config.results_dir).resolve()

    def new_run_dir(self, suffix: str = "") -> tuple[str, Path]:
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{self.run_name}{suffix}-{secrets.token_hex(3)}"
        return run_id, self.results_dir / "runs" / run_id

    def to_json(self, run_id: str) -> dict[str, Any]:
        entry = self.entry
        model = ({"name": entry.name, "size": entry.size, "framework": entry.framework, "task": entry.task}
                 if entry else {"name": "probe", "size": None, "framework": "pytorch", "task": "quota-probe"})
        return {
            "run_id": run_id,
            "run_name": self.run_name,
            "config_hash": config_hash(self.config),
            # The worker's environment carries the real values; files and MLflow never do.
            "config": redact_tree(to_plain(self.config)),
            "model": model,
            "backend": self.backend.describe(),
            "suite": {"version": fingerprint.suite_version(), "git_commit": fingerprint.git_commit()},
        }


def plan(config: BenchConfig) -> Job:
    """Raises UsageError or zoo.UnknownName (both printed as one line) for bad input.
    A dry run keeps a failing preflight in the plan instead, to show it."""
    backend = create_backend(config.backend, Path(config.results_dir).resolve())
    if config.workload.kind is WorkloadKind.train_ddp and backend.device == "cpu" and config.backend.threads is None:
        # Like against like: every rank and the one-process reference get the same share of the
        # cores. Left alone, torchrun gives ranks one thread each only when it starts several,
        # and a reference on all cores made the efficiency swing from 30% to 1800% with load.
        # Planned here, so the dry run shows it and resume finds the run by it.
        threads = max(1, len(os.sched_getaffinity(0)) // config.workload.processes)
        config = dataclasses.replace(config, backend=dataclasses.replace(config.backend, threads=threads))
        backend = create_backend(config.backend, Path(config.results_dir).resolve())
    preflight_error = None
    try:
        backend.preflight()
    except UsageError as exc:
        if not config.dry_run:
            raise
        preflight_error = str(exc)
    kind = config.workload.kind.value
    gpu_backends = ", ".join(n for n in backends.names() if backends.get(n).device == "cuda")
    if kind in ("probe", "microbench"):
        if backend.device != "cuda":
            what = "a GPU's quotas" if kind == "probe" else "what a GPU backend adds to CUDA calls"
            raise UsageError(f"workload={kind} measures {what}, and backend '{backend.name}' has no GPU. "
                             f"Valid: {gpu_backends}")
        return Job(config, None, backend, f"{kind}-{backend.name}", preflight_error)
    compile_mode = config.workload.compile.value
    if compile_mode == "cudagraphs" and backend.device != "cuda":
        raise UsageError(f"workload.compile=cudagraphs captures CUDA graphs, and backend '{backend.name}' has no GPU. "
                         f"Valid here: none, inductor")
    entry = zoo.get(config.model.name)(config.model.size)
    frameworks.get(entry.framework)
    if compile_mode != "none" and entry.framework != "pytorch":
        raise UsageError(f"workload.compile applies to PyTorch models; {entry.name} is {entry.framework} "
                         f"(use workload.tf_mode=eager|graph|xla)")
    if compile_mode != "none" and kind == "generate":
        raise UsageError("workload.compile is not supported with workload=generate (the decode loop changes shapes)")
    if config.model.weights and not Path(config.model.weights).exists():
        raise UsageError(f"model.weights={config.model.weights} does not exist (a local file or directory; "
                         f"nothing is downloaded)")
    if kind not in entry.workloads:
        able = [n for n in zoo.models.names() if kind in zoo.models.get(n).workloads]
        raise UsageError(f"model '{entry.name}' has no workload '{kind}' (it has {', '.join(entry.workloads)}); "
                         f"models with {kind}: {', '.join(able)}")
    try:
        shape = zoo.InputShape(seq_len=config.workload.seq_len, image_size=config.workload.image_size)
        entry.check_shape(shape, config.workload.new_tokens if kind == "generate" else 0)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    run_name = f"{entry.name}-{config.workload.kind.value}-{backend.name}"
    return Job(config, entry, backend, run_name, preflight_error)
