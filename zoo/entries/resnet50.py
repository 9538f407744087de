"""ResNet-50 (torchvision); `tiny` keeps the bottleneck design, one block per stage."""

from zoo.base import InputShape, models
from zoo.torchvision_entry import TorchvisionClassifier


@models.register
class ResNet50(TorchvisionClassifier):
    name = "resnet50"
    exported_to = ("onnxruntime", "mnn")
    summary = "torchvision ResNet-50 (ImageNet head, 1000 classes)."
    builder, weights_enum = "resnet50", "IMAGENET1K_V2"
    sizes = {
        "full": dict(),
        "tiny": dict(layers=[1, 1, 1, 1], num_classes=10, width_per_group=16),
    }
    default_size = "full"
    params = 25_557_032
    flops_per_sample = 8_178_368_512.0
    source = "torchvision ResNet50_Weights.IMAGENET1K_V2: num_params, 2 x _ops (4.089 GMACs)"

    def build(self, shape: InputShape = InputShape()):
        if self.size == "full":
            return super().build(shape)
        self.import_framework()
        from torchvision.models.resnet import Bottleneck, ResNet

        return ResNet(Bottleneck, **self.settings)
