"""What a zoo entry is. An entry builds its model, makes a seeded synthetic batch and
computes its loss; device placement, precision and timing belong to the runner.

Entries are imported by the orchestrating process to list and validate them, so
framework imports happen inside the methods, never at module level."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

from zoo.registry import Registry, UnknownName


@dataclass(frozen=True)
class InputShape:
    """The per-sample input shape a workload asks for; an entry uses the part it needs."""

    seq_len: int = 128  # text: tokens per sample (the prompt, for generation)
    image_size: int = 224  # vision: pixels per side


class ZooModel:
    name: ClassVar[str]
    framework: ClassVar[str]  # a key of runners.worker.frameworks.frameworks
    task: ClassVar[str]
    inputs: ClassVar[str]  # "text", "image", "tabular" or "none": which InputShape field applies
    summary: ClassVar[str]
    sizes: ClassVar[dict[str, dict[str, Any]]]  # size name -> architecture settings
    default_size: ClassVar[str]
    workloads: ClassVar[tuple[str, ...]] = ("infer", "train")
    max_seq_len: ClassVar[Optional[int]] = None
    min_image_size: ClassVar[Optional[int]] = None
    # Figures at the default size and input shape (InputShape()), one sample, forward
    # pass, in FLOPs (2 per multiply-add). tests/test_zoo_figures.py recomputes them from
    # the model and checks them against `source`, the upstream figure they must match.
    params: ClassVar[Optional[int]] = None
    flops_per_sample: ClassVar[Optional[float]] = None
    source: ClassVar[str] = ""
    # Most of the FLOPs are convolutions (cuDNN), whose fp32 runs use TF32 tensor cores by
    # default in PyTorch and TensorFlow: MFU then takes the TF32 peak (runners/worker/gpu_peaks.py).
    convolutional: ClassVar[bool] = False
    hidden: ClassVar[bool] = False  # not part of the zoo a user browses (the self-test entry)
    # Runtimes its model reaches by export (runtime=onnxruntime|mnn, docs/runtimes.md), each
    # one tested on the tiny preset; besides its own framework.
    exported_to: ClassVar[tuple[str, ...]] = ()
    # Modules besides the framework that build() imports and that other entries import alike
    # (torchvision's models; transformers' core): a fork server imports them once for every
    # entry naming the same, and each run imports what is its model's alone (import_framework).
    libraries: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def runtimes(cls) -> tuple[str, ...]:
        """Where this entry runs: its own framework first, then the runtimes it is exported to."""
        return (cls.framework, *cls.exported_to)

    def __init__(self, size: str | None = None):
        self.size = size or self.default_size
        if self.size not in self.sizes:
            raise UnknownName(f"size of model '{self.name}'", self.size, list(self.sizes))
        self.settings = self.sizes[self.size]

    def check_shape(self, shape: InputShape, new_tokens: int = 0) -> None:
        """Raise ValueError for an input shape this architecture cannot take."""
        if self.inputs == "text" and self.max_seq_len and shape.seq_len + new_tokens > self.max_seq_len:
            extra = f" + {new_tokens} new tokens" if new_tokens else ""
            raise ValueError(
                f"workload.seq_len={shape.seq_len}{extra} exceeds {self.name}'s maximum of {self.max_seq_len}"
            )
        if self.inputs == "image" and self.min_image_size and shape.image_size < self.min_image_size:
            raise ValueError(
                f"workload.image_size={shape.image_size} is below {self.name}'s minimum of {self.min_image_size}"
            )

    def items_per_sample(self, shape: InputShape) -> Optional[int]:
        """Tokens per sample for text models (for tokens/s); None otherwise."""
        return shape.seq_len if self.inputs == "text" else None

    # What every entry implements. `shape` is the workload's input shape, for the few
    # architectures whose weights depend on it (a ViT's position embeddings).
    def build(self, shape: InputShape = InputShape()) -> Any:
        raise NotImplementedError

    def make_batch(self, batch_size: int, shape: InputShape, seed: int) -> Any:
        raise NotImplementedError

    def forward(self, model: Any, batch: Any) -> Any:
        raise NotImplementedError

    def loss(self, model: Any, batch: Any) -> Any:
        raise NotImplementedError

    def import_libraries(self) -> None:
        """Import `libraries` (a fork server does it for every entry that names the same)."""
        for name in self.libraries:
            importlib.import_module(name)

    def load_weights(self, model: Any, path: Path) -> Any:
        """Load pretrained weights from a local file or directory (nothing is downloaded)."""
        raise NotImplementedError(f"{self.name} cannot load weights")


class TorchModel(ZooModel):
    """PyTorch entries: weights from a state-dict file (.pt/.pth/.bin) or a .safetensors file/directory."""

    framework = "pytorch"
    workloads = ("infer", "train", "train_ddp")

    def import_framework(self) -> None:
        """Import the libraries build() uses: `libraries` here, and what is the model's alone in
        the entries that have more (transformers' model classes). The weight cache
        (runners/worker/weight_cache.py) calls it before building on the meta device, where a
        tensor a module made at import time would be a meta tensor."""
        self.import_libraries()

    def import_libraries(self) -> None:
        if self.libraries:
            from zoo.torch_support import ensure_torchvision

            ensure_torchvision()  # before torchvision, which transformers imports too where it is installed
        super().import_libraries()

    def load_weights(self, model, path):
        import torch

        path = Path(path)
        if path.is_dir():
            candidates = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin")) or sorted(path.glob("*.pt*"))
            if not candidates:
                raise FileNotFoundError(f"no weights file (*.safetensors, *.bin, *.pt) in {path}")
            path = candidates[0]
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        return model


models: Registry[type[ZooModel]] = Registry("model")
