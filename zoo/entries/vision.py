"""More torchvision classifiers: mobile and efficient CNNs and a vision transformer."""

from zoo.base import InputShape, models
from zoo.torchvision_entry import TorchvisionClassifier


@models.register
class MobileNetV3Large(TorchvisionClassifier):
    name = "mobilenet_v3_large"
    exported_to = ("onnxruntime", "mnn")
    summary = "torchvision MobileNetV3-Large: depthwise convolutions, many small kernels."
    builder, weights_enum = "mobilenet_v3_large", "IMAGENET1K_V2"
    sizes = {"full": dict(), "tiny": dict(width_mult=0.25, num_classes=10)}
    default_size = "full"
    params = 5_483_032
    flops_per_sample = 433_179_520.0
    source = "torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V2: num_params, 2 x _ops (0.217 GMACs)"


@models.register
class EfficientNetB0(TorchvisionClassifier):
    name = "efficientnet_b0"
    exported_to = ("onnxruntime",)
    summary = "torchvision EfficientNet-B0: inverted residuals with squeeze-excitation."
    builder, weights_enum = "efficientnet_b0", "IMAGENET1K_V1"
    # tiny: B0's seven stages at a quarter of their width and depth (one block each), through
    # torchvision's own configuration; the full B0 took 660 ms a training step here (batch 8, 224^2).
    sizes = {"full": dict(), "tiny": dict(width_mult=0.25, depth_mult=0.25, num_classes=10)}
    default_size = "full"
    params = 5_288_548
    flops_per_sample = 771_629_504.0
    source = "torchvision EfficientNet_B0_Weights.IMAGENET1K_V1: num_params, 2 x _ops (0.386 GMACs)"

    def build(self, shape: InputShape = InputShape()):
        if self.size == "full":
            return super().build(shape)
        self.import_framework()
        from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf

        settings = dict(self.settings)
        scale = {k: settings.pop(k) for k in ("width_mult", "depth_mult")}
        blocks, last_channel = _efficientnet_conf(self.builder, **scale)
        return EfficientNet(blocks, dropout=0.2, last_channel=last_channel, **settings)


@models.register
class ViTB16(TorchvisionClassifier):
    name = "vit_b_16"
    exported_to = ("onnxruntime",)
    summary = "torchvision ViT-B/16: a transformer over 16x16 image patches."
    builder, weights_enum = "vit_b_16", "IMAGENET1K_V1"
    convolutional = False  # one patch-embedding convolution; the FLOPs are matmuls
    sizes = {"full": dict(), "tiny": dict(num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, num_classes=10)}
    default_size = "full"
    params = 86_567_656
    flops_per_sample = 35_127_656_448.0
    source = "torchvision ViT_B_16_Weights.IMAGENET1K_V1: num_params, 2 x _ops (17.564 GMACs)"
    patch_size = 16

    def check_shape(self, shape, new_tokens=0):
        super().check_shape(shape, new_tokens)
        if shape.image_size % self.patch_size:
            raise ValueError(
                f"workload.image_size={shape.image_size} must be a multiple of vit_b_16's patch size {self.patch_size}"
            )

    def build(self, shape: InputShape = InputShape()):
        from zoo.torch_support import ensure_torchvision

        ensure_torchvision()
        from torchvision.models.vision_transformer import VisionTransformer

        # The position embeddings depend on the image size: built for the workload's.
        config = dict(patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072) | self.settings
        return VisionTransformer(image_size=shape.image_size, **config)
