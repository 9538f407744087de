"""What a zoo entry is. An entry builds its model, makes a seeded synthetic batch and
computes its loss; device placement, precision and timing belong to the runner.

Entries are imported by the orchestrating process to list and validate them, so
framework imports happen inside the methods, never at module level."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from zoo.registry import Registry


@dataclass(frozen=True)
class InputShape:
    """The per-sample input shape a workload asks for; an entry uses the part it needs."""

    seq_len: int = 128
    image_size: int = 224


class ZooModel:
    name: ClassVar[str]
    framework: ClassVar[str]  # a key of runners.frameworks.frameworks
    task: ClassVar[str]
    inputs: ClassVar[str]  # "text", "image" or "none": which InputShape field applies
    summary: ClassVar[str]
    sizes: ClassVar[dict[str, dict[str, Any]]]  # size name -> architecture settings
    default_size: ClassVar[str]
    max_seq_len: ClassVar[int | None] = None
    min_image_size: ClassVar[int | None] = None

    def __init__(self, size: str | None = None):
        self.size = size or self.default_size
        if self.size not in self.sizes:
            from zoo.registry import UnknownName

            raise UnknownName(f"size of model '{self.name}'", self.size, list(self.sizes))
        self.settings = self.sizes[self.size]

    def check_shape(self, shape: InputShape) -> None:
        """Raise ValueError for an input shape this architecture cannot take."""
        if self.inputs == "text" and self.max_seq_len and shape.seq_len > self.max_seq_len:
            raise ValueError(
                f"workload.seq_len={shape.seq_len} exceeds {self.name}'s maximum of {self.max_seq_len}"
            )
        if self.inputs == "image" and self.min_image_size and shape.image_size < self.min_image_size:
            raise ValueError(
                f"workload.image_size={shape.image_size} is below {self.name}'s minimum of {self.min_image_size}"
            )

    def items_per_sample(self, shape: InputShape) -> int | None:
        """Tokens per sample for text models (for tokens/s); None otherwise."""
        return shape.seq_len if self.inputs == "text" else None

    # The three things every entry implements.
    def build(self) -> Any:
        raise NotImplementedError

    def make_batch(self, batch_size: int, shape: InputShape, seed: int) -> Any:
        raise NotImplementedError

    def forward(self, model: Any, batch: Any) -> Any:
        raise NotImplementedError

    def loss(self, model: Any, batch: Any) -> Any:
        raise NotImplementedError


models: Registry[type[ZooModel]] = Registry("model")
