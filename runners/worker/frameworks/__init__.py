"""Framework adapters: how a zoo entry of one framework is placed on a device, run at
a precision, synchronized and timed. Adding a framework means adding one adapter.
Adapters import their framework lazily, so listing them costs nothing."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional

from runners.worker.measure import StepTimer
from zoo.base import InputShape, ZooModel
from zoo.registry import Registry


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

    # The steps the scenarios (runners/scenarios/) are made of: each builds the model and its
    # batch on the device and returns one step.
    def infer_step(self, entry: ZooModel, batch_size: int, shape: InputShape, seed: int) -> Callable[[], Any]:
        raise NotImplementedError(f"framework '{self.name}' has no inference step")

    def train_step(
        self, entry: ZooModel, batch_size: int, shape: InputShape, seed: int, distributed: bool = False
    ) -> Callable[[], Any]:
        raise NotImplementedError(
            f"framework '{self.name}' has no {'distributed ' if distributed else ''}training step"
        )

    def generate_step(
        self, entry: ZooModel, batch_size: int, shape: InputShape, seed: int, new_tokens: int
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
        from pathlib import Path

        return entry.load_weights(model, Path(self.weights)) or model

    def synchronize(self) -> None:
        """Wait for all work launched on the device."""

    def step_timer(self) -> Optional[StepTimer]:
        """Device-side per-step timer, where the device has one."""
        return None

    def final_loss(self) -> Optional[float]:
        return None

    def param_count(self) -> Optional[int]:
        return None

    def memory(self) -> list[dict[str, Any]]:
        """Peak memory readings, each with its `source`."""
        return []

    def describe(self) -> dict[str, Any]:
        """Framework and device facts for the environment fingerprint."""
        return {}


frameworks: Registry[type[Framework]] = Registry("framework")

from runners.worker.frameworks import python, pytorch, tensorflow  # noqa: E402,F401  (registers the adapters)
