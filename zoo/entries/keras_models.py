"""TensorFlow/Keras entries: two keras.applications CNNs and a BERT-base built from Keras layers."""

from zoo.base import InputShape, models
from zoo.keras_entry import KerasImageClassifier, KerasModel


@models.register
class KerasResNet50(KerasImageClassifier):
    name = "keras_resnet50"
    summary = "keras.applications ResNet50 (TensorFlow), channels-last."
    application = "ResNet50"
    # tiny: the bottleneck design with one block per stage, as the torch resnet50's tiny, through
    # the code keras.applications.ResNet50 runs. Keras ties a block's output to 4x its bottleneck
    # width, so the bottlenecks are torch tiny's (16..128 wide) and the outputs 64..512, not 256..2048.
    sizes = {"full": dict(), "tiny": dict(filters=(16, 32, 64, 128), classes=10)}
    default_size = "full"
    params = 25_636_712
    flops_per_sample = 7_755_294_312.0
    source = (
        "keras.applications ResNet50: 25,636,712 params (Keras documentation table); "
        "ResNet-50 v1 3.8 G multiply-adds (He et al.)"
    )

    def build(self, shape: InputShape = InputShape()):
        if self.size == "full":
            return super().build(shape)
        from keras.src.applications.resnet import ResNet, stack_residual_blocks_v1

        settings = dict(self.settings)
        filters = settings.pop("filters")

        def stack_fn(x):
            for stage, width in enumerate(filters):
                # ResNet50's stack_fn with one block each: stage conv2 keeps the stem's stride.
                x = stack_residual_blocks_v1(x, width, 1, stride1=2 if stage else 1, name=f"conv{stage + 2}")
            return x

        size = shape.image_size
        return ResNet(
            stack_fn,
            preact=False,
            use_bias=True,
            weights=None,
            input_shape=(size, size, 3),
            classifier_activation=None,
            name=f"resnet50_{self.size}",
            **settings,
        )


@models.register
class KerasMobileNetV2(KerasImageClassifier):
    name = "keras_mobilenet_v2"
    summary = "keras.applications MobileNetV2 (TensorFlow): depthwise separable convolutions."
    application = "MobileNetV2"
    # tiny: the first inverted residual block of each of its seven stages (7 of 17), at width
    # 0.35, through the block keras.applications.MobileNetV2 builds with. The full depth at that
    # width took 4.7 s to trace its train step on a 2-core CPU.
    sizes = {"full": dict(), "tiny": dict(alpha=0.35, classes=10)}
    stages = ((1, 16, 1), (6, 24, 2), (6, 32, 2), (6, 64, 2), (6, 96, 1), (6, 160, 2), (6, 320, 1))  # t, c, s
    default_size = "full"
    params = 3_538_984
    flops_per_sample = 615_287_208.0
    source = (
        "keras.applications MobileNetV2 (alpha 1.0, 224): 3,538,984 params (Keras documentation table); "
        "300 M multiply-adds (Sandler et al.)"
    )

    def build(self, shape: InputShape = InputShape()):
        if self.size == "full":
            return super().build(shape)
        import keras
        from keras import layers as L
        from keras.src.applications.mobilenet_v2 import _inverted_res_block, _make_divisible

        alpha, size = self.settings["alpha"], shape.image_size
        inputs = keras.Input(shape=(size, size, 3))
        x = L.Conv2D(_make_divisible(32 * alpha, 8), 3, strides=2, padding="same", use_bias=False, name="Conv1")(inputs)
        x = L.ReLU(6.0, name="Conv1_relu")(L.BatchNormalization(epsilon=1e-3, momentum=0.999, name="bn_Conv1")(x))
        for block_id, (expansion, filters, stride) in enumerate(self.stages):
            x = _inverted_res_block(
                x, expansion=expansion, stride=stride, alpha=alpha, filters=filters, block_id=block_id
            )
        x = L.Conv2D(1280, 1, use_bias=False, name="Conv_1")(x)  # MobileNetV2 keeps 1280 for alpha < 1
        x = L.ReLU(6.0, name="out_relu")(L.BatchNormalization(epsilon=1e-3, momentum=0.999, name="Conv_1_bn")(x))
        logits = L.Dense(self.settings["classes"], name="predictions")(L.GlobalAveragePooling2D()(x))
        return keras.Model(inputs, logits, name=f"mobilenetv2_{self.size}")


def _bert_layers(
    vocab: int, hidden: int, layers: int, heads: int, intermediate: int, labels: int, max_positions: int = 512
):
    import keras
    from keras import layers as L

    class Embeddings(L.Layer):
        """Word + position + token-type (all type 0) embeddings, as BERT adds them."""

        def build(self, input_shape):
            self.words = self.add_weight(shape=(vocab, hidden), name="word_embeddings")
            self.positions = self.add_weight(shape=(max_positions, hidden), name="position_embeddings")
            self.token_types = self.add_weight(shape=(2, hidden), name="token_type_embeddings")

        def call(self, ids):
            length = keras.ops.shape(ids)[1]
            return (
                keras.ops.take(self.words, ids, axis=0)
                + self.positions[None, :length]
                + self.token_types[None, None, 0]
            )

    ids = keras.Input(shape=(None,), dtype="int32", name="input_ids")
    x = L.Dropout(0.1)(L.LayerNormalization(epsilon=1e-12)(Embeddings()(ids)))
    for _ in range(layers):
        attention = L.MultiHeadAttention(num_heads=heads, key_dim=hidden // heads, dropout=0.1)(x, x)
        x = L.LayerNormalization(epsilon=1e-12)(x + L.Dropout(0.1)(attention))
        ffn = L.Dense(hidden)(L.Dense(intermediate, activation="gelu")(x))
        x = L.LayerNormalization(epsilon=1e-12)(x + L.Dropout(0.1)(ffn))
    pooled = L.Dense(hidden, activation="tanh")(x[:, 0])
    logits = L.Dense(labels)(L.Dropout(0.1)(pooled))
    return keras.Model(ids, logits, name="keras_bert")


@models.register
class KerasBert(KerasModel):
    name = "keras_bert"
    task = "text-classification"
    inputs = "text"
    summary = "BERT-base encoder built from Keras layers (TensorFlow) with a 2-class head; mirrors the bert entry."
    sizes = {
        "base": dict(hidden=768, layers=12, heads=12, intermediate=3072),
        "tiny": dict(hidden=128, layers=2, heads=2, intermediate=512),
    }
    default_size = "base"
    max_seq_len = 512
    vocab_size = 30522
    params = 109_483_778
    flops_per_sample = 22_415_589_890.0  # TensorFlow's profiler also counts softmax, GELU and norms
    source = "BERT-base: the same 109,483,778 params as transformers' BertForSequenceClassification (2 labels)"

    def build(self, shape: InputShape = InputShape()):
        return _bert_layers(self.vocab_size, labels=2, **self.settings)

    def make_batch(self, batch_size, shape, seed):
        import numpy as np

        rng = np.random.default_rng(seed)
        return {
            "x": rng.integers(0, self.vocab_size, (batch_size, shape.seq_len)).astype(np.int32),
            "y": rng.integers(0, 2, batch_size).astype(np.int32),
        }
