"""The vgpu-bench model zoo: models built from their published configurations with
random weights, seeded synthetic batches, and a loss; usable without the runners."""
from __future__ import annotations

from zoo.base import InputShape, ZooModel, models
import zoo.entries  # noqa: F401,E402  (registers the entries)
from zoo.registry import UnknownName


def get(name: str) -> type[ZooModel]:
    """The entry class registered under `name` (UnknownName with suggestions otherwise)."""
    return models.get(name)


def list() -> list[str]:  # noqa: A001  (the public name the design asks for)
    return [name for name in models.names() if not getattr(models.get(name), "hidden", False)]


__all__ = ["InputShape", "UnknownName", "ZooModel", "get", "list", "models"]
