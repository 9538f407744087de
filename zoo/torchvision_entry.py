"""Image classifiers from torchvision, random weights, a seeded batch of images."""

from __future__ import annotations

from zoo.base import InputShape, TorchModel


class TorchvisionClassifier(TorchModel):
    task = "image-classification"
    inputs = "image"
    min_image_size = 32
    convolutional = True
    builder: str  # torchvision.models name
    weights_enum: str  # the weights whose metadata (params, _ops) the figures must match
    libraries = ("torchvision.models",)  # every builder at once

    def build(self, shape: InputShape = InputShape()):
        self.import_framework()
        import torchvision

        return torchvision.models.get_model(self.builder, weights=None, **self.settings)

    def num_classes(self) -> int:
        return self.settings.get("num_classes", 1000)

    def make_batch(self, batch_size, shape, seed):
        import torch

        from zoo.torch_support import generator

        g = generator(seed)
        size = shape.image_size
        return {
            "images": torch.randn(batch_size, 3, size, size, generator=g),
            "labels": torch.randint(0, self.num_classes(), (batch_size,), generator=g),
        }

    def forward(self, model, batch):
        return model(batch["images"])

    def loss(self, model, batch):
        import torch.nn.functional as F

        return F.cross_entropy(self.forward(model, batch).float(), batch["labels"])

    def categories(self) -> list[str]:
        """ImageNet class names, from torchvision's weights metadata (offline)."""
        from zoo.torch_support import ensure_torchvision

        ensure_torchvision()
        from torchvision.models import get_model_weights

        return list(getattr(get_model_weights(self.builder), self.weights_enum).meta["categories"])
