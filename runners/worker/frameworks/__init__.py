"""Framework adapters: how a zoo entry of one framework is placed on a device, run at
a precision, synchronized and timed. Adding a framework means adding one adapter.
Adapters import their framework lazily, so listing them costs nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from runners.config import RuntimeConfig, WorkloadConfig
from runners.contracts import Check
from runners.worker.measure import StepTimer
from runners.worker.startup import Startup
from zoo.base import InputShape, ZooModel
from zoo.registry import Registry


@dataclass
class Traffic:
    """What the suite's own steps moved between host and device (workload.inputs), counted
    as each copy is issued. On the CPU backend a "copy to the device" is a host copy."""

    inputs: str = "device"
    pinned: bool = False  # page-locked host memory actually used (only with a CUDA device)
    to_device_bytes: int = 0
    to_host_bytes: int = 0
    copies: int = 0
    steps: int = 0

    def to_device(self, sizes: list[int]) -> None:
        """One step's batch went to the device: its tensors' sizes in bytes."""
        self.to_device_bytes += sum(sizes)
        self.copies += len(sizes)
        self.steps += 1

    def to_host(self, sizes: list[int]) -> None:
        """The step's outputs came back to the host."""
        self.to_host_bytes += sum(sizes)
        self.copies += len(sizes)

    def per_step(self) -> dict[str, float]:
        steps = max(self.steps, 1)
        return {
            "to_device_bytes": self.to_device_bytes / steps,
            "to_host_bytes": self.to_host_bytes / steps,
            "copies": self.copies / steps,
        }


class Framework:
    name: ClassVar[str]

    def __init__(
        self,
        device: str,
        precision: str,
        threads: Optional[int],
        mode: str = "graph",
        compile: str = "none",
        weights: Optional[str] = None,
    ):
        self.device, self.precision, self.threads = device, precision, threads
        self.compile = compile  # PyTorch: none, inductor or cudagraphs
        self.weights = weights  # local pretrained weights, loaded after build
        self.traffic = Traffic()
        self.startup: Optional[Startup] = None  # set by the worker; adapters mark their phases
        self.runtime: Optional[RuntimeConfig] = None  # set by the worker: runtime.provider, runtime.opset
        self.exports_dir = Path("results") / "exports"  # set by the worker: <results>/exports
        self.weights_cache_dir: Optional[Path] = None  # set by the worker: <results>/.cache/weights

    def mark(self, phase: str) -> None:
        if self.startup:
            self.startup.mark(phase)

    def init_device(self) -> None:
        """Create the device context now, so that its cost is a phase of its own."""

    # The steps the scenarios (runners/scenarios/) are made of: each builds the model, sets up
    # where its data comes from (workload.inputs) and returns one step.
    def infer_step(self, entry: ZooModel, workload: WorkloadConfig, shape: InputShape, seed: int) -> Callable[[], Any]:
        raise NotImplementedError(f"framework '{self.name}' has no inference step")

    def batch_step(
        self, entry: ZooModel, workload: WorkloadConfig, shape: InputShape, seed: int, max_batch_size: int
    ) -> Callable[[int], Any]:
        """Serving: a forward over n requests at once (1 <= n <= max_batch_size), synchronized."""
        raise NotImplementedError(f"framework '{self.name}' cannot serve")

    def decode_batch_step(
        self,
        entry: ZooModel,
        workload: WorkloadConfig,
        shape: InputShape,
        seed: int,
        max_batch_size: int,
        new_tokens: int,
    ) -> Callable[[int], list[float]]:
        """Serving decoders: n prompts, then new_tokens tokens each; the CLOCK_MONOTONIC time of each token."""
        raise NotImplementedError(f"framework '{self.name}' cannot serve decoders")

    def train_step(
        self, entry: ZooModel, workload: WorkloadConfig, shape: InputShape, seed: int, distributed: bool = False
    ) -> Callable[[], Any]:
        raise NotImplementedError(
            f"framework '{self.name}' has no {'distributed ' if distributed else ''}training step"
        )

    def generate_step(
        self, entry: ZooModel, workload: WorkloadConfig, shape: InputShape, seed: int, new_tokens: int
    ) -> Callable[[], Any]:
        raise NotImplementedError(f"framework '{self.name}' has no generation step")

    def parity(
        self, entry: ZooModel, batch_size: int, shape: InputShape, seed: int, steps: int
    ) -> tuple[Any, list[float]]:
        """Seeded forward outputs (a numpy array) and the training loss over `steps` steps."""
        raise NotImplementedError(f"framework '{self.name}' has no parity check")

    def load_weights(self, entry: ZooModel, model: Any) -> Any:
        if not self.weights:
            return model
        return entry.load_weights(model, Path(self.weights)) or model

    def synchronize(self) -> None:
        """Wait for all work launched on the device."""

    def step_timer(self) -> Optional[StepTimer]:
        """Device-side per-step timer, where the device has one."""
        return None

    def final_loss(self) -> Optional[float]:
        return None

    def tf32_enabled(self, entry: ZooModel) -> bool:
        """Whether an fp32 run of `entry` may use TF32 tensor cores for its main operation."""
        return False

    def param_count(self) -> Optional[int]:
        return None

    def memory(self) -> list[dict[str, Any]]:
        """Peak memory readings, each with its `source`."""
        return []

    def describe(self) -> dict[str, Any]:
        """Framework and device facts for the environment fingerprint."""
        return {}

    def runtime_checks(self) -> list[Check]:
        """Evidence that the runtime ran where it was asked to (a requested execution provider
        or backend), added to the backend's checks: one that failed makes the run invalid."""
        return []

    def device_seen(self) -> dict[str, Any]:
        """The GPU a runtime without torch.cuda ran on, for the backend's checks; {} for none."""
        return {}


frameworks: Registry[type[Framework]] = Registry("framework")

from runners.worker.frameworks import (  # noqa: E402,F401  (registers the adapters)
    mnn_runtime,
    ort_runtime,
    python,
    pytorch,
    tensorflow,
)
