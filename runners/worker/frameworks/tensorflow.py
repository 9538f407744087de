"""TensorFlow/Keras: execution mode (eager, graph = tf.function, xla = jit_compile),
mixed-precision policy, train/infer steps, device memory."""

from __future__ import annotations

from typing import Any, Optional

from runners.worker.frameworks import Framework, frameworks

_POLICIES = {"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


@frameworks.register
class TensorFlowFramework(Framework):
    name = "tensorflow"

    def __init__(self, device, precision, threads, mode="graph", compile="none", weights=None):
        super().__init__(device, precision, threads, mode, compile, weights)
        import keras
        import tensorflow as tf

        self.tf, self.keras, self.mode = tf, keras, mode
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        keras.mixed_precision.set_global_policy(_POLICIES[precision])
        self.model, self._last, self._loss = None, None, None

    def _compile(self, fn):
        if self.mode == "eager":
            return fn
        return self.tf.function(fn, jit_compile=self.mode == "xla")

    def _model_and_batch(self, entry, batch_size, shape, seed):
        self.keras.utils.set_random_seed(seed)
        self.model = self.load_weights(entry, entry.build(shape))
        return self.model, {k: self.tf.constant(v) for k, v in entry.make_batch(batch_size, shape, seed).items()}

    def infer_step(self, entry, batch_size, shape, seed):
        model, batch = self._model_and_batch(entry, batch_size, shape, seed)
        forward = self._compile(lambda: entry.forward(model, batch))

        def infer_step():
            self._last = forward()
            return self._last

        return infer_step

    def train_step(self, entry, batch_size, shape, seed, distributed=False):
        if distributed:
            return super().train_step(entry, batch_size, shape, seed, distributed)
        tf, keras = self.tf, self.keras
        model, batch = self._model_and_batch(entry, batch_size, shape, seed)
        optimizer = keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9)
        if self.precision == "fp16":
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)

        def train(batch=batch):
            with tf.GradientTape() as tape:
                loss = entry.loss(model, batch)
                scaled = optimizer.scale_loss(loss) if self.precision == "fp16" else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        compiled = self._compile(train)

        def train_step():
            self._last = self._loss = compiled()
            return self._loss

        return train_step

    def synchronize(self) -> None:
        # TensorFlow runs asynchronously on a GPU; reading the last result waits for it.
        if self._last is not None:
            self.tf.nest.map_structure(lambda t: t.numpy(), self._last)

    def final_loss(self) -> Optional[float]:
        return float(self._loss.numpy()) if self._loss is not None else None

    def param_count(self) -> Optional[int]:
        return int(self.model.count_params()) if self.model is not None else None

    def memory(self):
        if self.device != "cuda":
            return []
        info = self.tf.config.experimental.get_memory_info("GPU:0")
        return [
            {
                "source": "tf.config.experimental.get_memory_info.peak",
                "peak_mb": info["peak"] / 2**20,
                "scope": "TensorFlow's GPU allocator (peak)",
            }
        ]

    def describe(self) -> dict[str, Any]:
        tf = self.tf
        info: dict[str, Any] = {
            "tensorflow": tf.__version__,
            "keras": self.keras.__version__,
            "mode": self.mode,
            "tf_cuda": tf.sysconfig.get_build_info().get("cuda_version"),
            "threads": tf.config.threading.get_intra_op_parallelism_threads(),
        }
        gpus = tf.config.list_physical_devices("GPU")
        if gpus and self.device == "cuda":
            details = tf.config.experimental.get_device_details(gpus[0])
            info["cuda_device"] = {
                "name": details.get("device_name"),
                "capability": ".".join(map(str, details.get("compute_capability", ()))),
            }
        return info
