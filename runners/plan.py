"""config -> plan: check everything that can be checked without running, and describe
the worker's job as plain JSON."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zoo
from runners import backends, fingerprint
from runners.config import BenchConfig, to_plain
from runners.errors import UsageError
from runners.frameworks import frameworks


@dataclass
class Job:
    config: BenchConfig
    entry: zoo.ZooModel
    backend: backends.Backend
    run_name: str

    def new_run_dir(self, results_dir: Path) -> tuple[str, Path]:
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{self.run_name}-{secrets.token_hex(3)}"
        return run_id, results_dir / "runs" / run_id

    def to_json(self, run_id: str) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "run_name": self.run_name,
            "config": to_plain(self.config),
            "model": {"name": self.entry.name, "size": self.entry.size, "framework": self.entry.framework,
                      "task": self.entry.task},
            "backend": self.backend.describe(),
            "suite": {"version": fingerprint.suite_version(), "git_commit": fingerprint.git_commit()},
        }


def plan(config: BenchConfig) -> Job:
    """Raises UsageError or zoo.UnknownName (both printed as one line) for bad input."""
    entry = zoo.get(config.model.name)(config.model.size)
    frameworks.get(entry.framework)
    try:
        entry.check_shape(zoo.InputShape(seq_len=config.workload.seq_len, image_size=config.workload.image_size))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    backend = backends.get(config.backend)
    run_name = f"{entry.name}-{config.workload.kind.value}-{backend.name}"
    return Job(config=config, entry=entry, backend=backend, run_name=run_name)
