"""Keras (TensorFlow) entries: batches are seeded numpy arrays; the adapter runs them."""

from __future__ import annotations

from pathlib import Path

from zoo.base import InputShape, ZooModel


class KerasModel(ZooModel):
    framework = "tensorflow"

    def model_inputs(self, batch):
        return batch["x"]

    def forward(self, model, batch):
        return model(self.model_inputs(batch), training=False)

    def loss(self, model, batch):
        import keras

        logits = model(self.model_inputs(batch), training=True)
        return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(batch["y"], logits, from_logits=True))

    def load_weights(self, model, path):
        model.load_weights(str(Path(path)))
        return model


class KerasImageClassifier(KerasModel):
    task = "image-classification"
    inputs = "image"
    min_image_size = 32
    convolutional = True
    application: str  # a keras.applications constructor

    def build(self, shape: InputShape = InputShape()):
        import keras

        size = shape.image_size
        return getattr(keras.applications, self.application)(
            weights=None, input_shape=(size, size, 3), classifier_activation=None, **self.settings
        )

    def make_batch(self, batch_size, shape, seed):
        import numpy as np

        rng = np.random.default_rng(seed)
        size = shape.image_size
        return {
            "x": rng.standard_normal((batch_size, size, size, 3), dtype=np.float32),
            "y": rng.integers(0, self.settings.get("classes", 1000), batch_size).astype(np.int32),
        }
