"""Backends: how a worker process gets its device.

A backend is (1) the environment applied to the worker before the framework
initializes CUDA (variables, library paths, preloaded libraries), (2) optionally a
daemon started before the runs and always stopped after them, (3) a preflight that
fails with one line when the runtime is missing, and (4) what it records: its kind,
version and every variable applied (secrets redacted). Add one by subclassing
Backend in a module of this package and registering it (docs/backends.md)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, ClassVar, Iterator, Optional

from runners.config import BackendConfig
from runners.errors import UsageError
from runners.redact import redact_env
from zoo.registry import Registry


class Backend:
    name: ClassVar[str]
    device: ClassVar[str]  # what the framework runs on: "cpu" or "cuda"
    summary: ClassVar[str]
    config_class: ClassVar[type[BackendConfig]] = BackendConfig

    def __init__(self, config: BackendConfig, state_dir: Path, requested: Optional[str] = None):
        self.config = config
        self.state_dir = Path(state_dir)  # for daemons' pipes and logs: <results_dir>/backends/<name>
        self.requested = requested or config.name

    def resolve(self) -> "Backend":
        """The concrete backend (auto picks one)."""
        return self

    def preflight(self) -> None:
        """Raise UsageError when this machine cannot run the backend: say what is missing and the fix."""

    def environment(self) -> dict[str, str]:
        """Variables set in the worker's environment (added to the parent's)."""
        env = {}
        if self.config.threads:
            env.update(OMP_NUM_THREADS=str(self.config.threads), MKL_NUM_THREADS=str(self.config.threads))
        env.update({k: str(v) for k, v in self.config.extra_env.items()})
        return env

    def version(self) -> Optional[str]:
        """The virtualization layer's version, where it can be discovered."""
        return None

    def daemon_commands(self) -> dict[str, list[str]]:
        """What `session` runs around the workers, for the dry run: {"start": [...], "stop": [...]}."""
        return {}

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Around all workers of one command (every tenant): start a daemon, always stop it."""
        yield

    def memory_quota_mb(self) -> Optional[float]:
        """The device memory a worker is configured to get, for the quota probe."""
        return None

    def compute_share(self) -> Optional[float]:
        """The configured share of the GPU's compute, in percent, for the quota probe."""
        return None

    def describe(self) -> dict[str, Any]:
        """The backend's part of the result (secret values redacted)."""
        return {
            "name": self.name,
            "requested": self.requested,
            "device": self.device,
            "kind": self.summary,
            "version": self.version(),
            "env": redact_env(self.environment()),
            "memory_quota_mb": self.memory_quota_mb(),
            "compute_share": self.compute_share(),
        }


def prepend_path(variable: str, *entries: str) -> str:
    """`entries` first, then what the parent already has in `variable`."""
    existing = os.environ.get(variable, "")
    return os.pathsep.join([*entries, *([existing] if existing else [])])


backends: Registry[type[Backend]] = Registry("backend")


def create(config: BackendConfig, results_dir: Path) -> Backend:
    """The resolved backend for `config` (UnknownName for a wrong name); no preflight yet."""
    cls = backends.get(config.name)
    return cls(config, Path(results_dir) / "backends" / config.name).resolve()


from runners.backends import hami, local, mig, mps, vgpu  # noqa: E402,F401  (registers the backends)

__all__ = ["Backend", "UsageError", "backends", "create", "prepend_path"]
