"""ResNet-50 (torchvision), random weights; `tiny` keeps the bottleneck design, one block per stage."""
from zoo.base import ZooModel, models


@models.register
class ResNet50(ZooModel):
    name = "resnet50"
    framework = "pytorch"
    task = "image-classification"
    inputs = "image"
    summary = "torchvision ResNet-50 (ImageNet head, 1000 classes)."
    sizes = {
        "full": dict(layers=[3, 4, 6, 3], num_classes=1000),
        "tiny": dict(layers=[1, 1, 1, 1], num_classes=10, width_per_group=16),
    }
    default_size = "full"
    min_image_size = 32  # five stride-2 stages

    def build(self):
        from zoo.torch_support import ensure_torchvision

        ensure_torchvision()
        from torchvision.models.resnet import Bottleneck, ResNet

        return ResNet(Bottleneck, **self.settings)

    def make_batch(self, batch_size, shape, seed):
        import torch

        from zoo.torch_support import generator

        g = generator(seed)
        size = shape.image_size
        return {
            "images": torch.randn(batch_size, 3, size, size, generator=g),
            "labels": torch.randint(0, self.settings["num_classes"], (batch_size,), generator=g),
        }

    def forward(self, model, batch):
        return model(batch["images"])

    def loss(self, model, batch):
        import torch.nn.functional as F

        return F.cross_entropy(self.forward(model, batch).float(), batch["labels"])
