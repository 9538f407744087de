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
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Optional

from runners.config import BackendConfig
from runners.contracts import Check
from runners.errors import UsageError
from runners.redact import REDACTED, redact_env
from zoo.registry import Registry


@dataclass
class Seen:
    """What a worker can see of its backend, gathered in the worker after its work."""

    env: dict[str, str]  # the worker's whole environment
    expected_env: dict[str, str]  # what the parent set for it (secret values redacted)
    mapped: list[str]  # every shared library file mapped into the worker
    device: dict[str, Any] = field(default_factory=dict)  # the CUDA device it initialized; {} for none
    framework_loaded: bool = False  # torch or TensorFlow was imported (a framework-free workload uses no device)
    pid: int = 0
    run_dir: Optional[Path] = None

    def mapped_like(self, name: str) -> list[str]:
        return [path for path in self.mapped if os.path.basename(path).startswith(name)]


class Backend:
    name: ClassVar[str]
    device: ClassVar[str]  # what the framework runs on: "cpu" or "cuda"
    summary: ClassVar[str]
    config_class: ClassVar[type[BackendConfig]] = BackendConfig
    # Whether a sweep's workers may be forked from one pre-warmed process started with this
    # backend's environment (runners/parent/fork_servers.py): true where nothing of the layer
    # acts before CUDA initializes in the worker. A layer that attaches when its library loads
    # (or needs a variable of one run in effect from the start) keeps fresh workers.
    fork_safe: ClassVar[bool] = False

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

    def run_environment(self, run_dir: Path) -> dict[str, str]:
        """Variables of one run only (each worker its own), added to `environment()` at launch."""
        return {}

    def end_run(self, run_dir: Path) -> None:
        """After one run's worker has ended: remove what `run_environment` made for it."""

    def check_framework(self, framework: str) -> None:
        """Raise UsageError when this backend cannot serve `framework` as installed here (planning)."""

    def check_ranks(self, processes: int) -> None:
        """Raise UsageError when `processes` data-parallel ranks cannot each have a device of
        their own (NCCL refuses two ranks on one GPU): counted as the worker would see them."""
        if self.device != "cuda" or processes <= 1:
            return
        from runners.nvml import visible_device_count

        count, why = visible_device_count(
            self.environment().get("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES"))
        )
        if count and count < processes:
            raise UsageError(
                f"workload.processes={processes} puts each rank on a GPU of its own, and backend '{self.name}' "
                f"sees {count} ({why}). Valid: workload.processes=1..{count}"
            )

    def engagement(self, seen: Seen) -> list[Check]:
        """In the worker, after its work: the evidence that this backend's layer engaged. Each
        backend adds its own checks to this one: the worker got every variable the backend set."""
        wrong = []
        for key, expected in seen.expected_env.items():
            actual = seen.env.get(key)
            if actual is None or (expected != REDACTED and actual != expected):
                wrong.append(f"{key}={actual!r} (set: {expected!r})")
        detail = "; ".join(wrong) if wrong else f"all {len(seen.expected_env)} variables as set"
        return [Check("environment_applied", not wrong, detail)]

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


def instance_name(token: str) -> str:
    """This command's name for a daemon or server it starts (host, process, `token`): the
    folder of its logs and state, never shared with another command's."""
    return f"{socket.gethostname()}-{os.getpid()}-{token}"


backends: Registry[type[Backend]] = Registry("backend")


def create(config: BackendConfig, results_dir: Path) -> Backend:
    """The resolved backend for `config` (UnknownName for a wrong name); no preflight yet."""
    cls = backends.get(config.name)
    return cls(config, Path(results_dir) / "backends" / config.name).resolve()


from runners.backends import hami, local, lupine, mig, mps, vgpu  # noqa: E402,F401  (registers the backends)

__all__ = ["Backend", "Check", "Seen", "UsageError", "backends", "create", "instance_name", "prepend_path"]
