"""The vgpu-bench model zoo: models built from their published configurations with
random weights (or local pretrained ones), seeded synthetic batches, and a loss;
usable without the runners:

    import zoo
    zoo.list()                                   # names
    m = zoo.load("resnet50", size="tiny")        # model, batch factory, loss
    batch = m.make_batch(4)
    loss = m.loss(m.model, batch)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import zoo.entries  # noqa: F401,E402  (registers the entries)
from zoo.base import InputShape, ZooModel, models
from zoo.registry import UnknownName


def get(name: str) -> type[ZooModel]:
    """The entry class registered under `name` (UnknownName with suggestions otherwise)."""
    return models.get(name)


def list() -> list[str]:  # noqa: A001  (the public name the design asks for)
    """The names of the zoo's models (the self-test entry excluded)."""
    return [name for name in models.names() if not models.get(name).hidden]


@dataclass
class Loaded:
    """A built model with what it takes to run it."""

    entry: ZooModel
    model: Any
    shape: InputShape
    seed: int

    def make_batch(self, batch_size: int, seed: Optional[int] = None) -> Any:
        return self.entry.make_batch(batch_size, self.shape, self.seed if seed is None else seed)

    def forward(self, model: Any, batch: Any) -> Any:
        return self.entry.forward(model, batch)

    def loss(self, model: Any, batch: Any) -> Any:
        return self.entry.loss(model, batch)


def load(
    name: str,
    size: Optional[str] = None,
    weights: Optional[str | Path] = None,
    shape: InputShape = InputShape(),
    seed: int = 0,
) -> Loaded:
    """Build `name` at `size` (its real size by default) with random weights seeded by
    `seed`, or with pretrained weights from a local file or directory."""
    entry = get(name)(size)
    entry.check_shape(shape)
    if entry.framework == "pytorch":
        import torch

        torch.manual_seed(seed)
    elif entry.framework == "tensorflow":
        import keras

        keras.utils.set_random_seed(seed)
    model = entry.build(shape)
    if weights is not None:
        model = entry.load_weights(model, Path(weights)) or model
    return Loaded(entry, model, shape, seed)


def card(entry: type[ZooModel]) -> dict[str, Any]:
    """What `python -m zoo list --json` prints for one entry."""
    return {
        "name": entry.name,
        "framework": entry.framework,
        "task": entry.task,
        "params": entry.params,
        "flops_per_sample": entry.flops_per_sample,
        "workloads": [*entry.workloads],
        "runtimes": [*entry.runtimes()],
    }


__all__ = ["InputShape", "Loaded", "UnknownName", "ZooModel", "card", "get", "list", "load", "models"]
