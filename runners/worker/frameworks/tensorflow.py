"""TensorFlow/Keras: execution mode (eager, graph = tf.function, xla = jit_compile),
mixed-precision policy, train/infer steps, device memory."""

from __future__ import annotations

from typing import Any, Optional

from runners.worker.frameworks import Framework, frameworks

_POLICIES = {"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


def _nbytes(value) -> int:
    """A numpy array's or a tensor's size, without copying the tensor to read it."""
    return int(value.nbytes) if hasattr(value, "nbytes") else int(value.shape.num_elements() * value.dtype.size)


class TfFeed:
    """Where a Keras step's batch comes from (workload.inputs): tensors kept on the device,
    host (numpy) arrays converted each step, or a tf.data pipeline over seeded samples
    with parallel batching and prefetch; and the bytes and copies that costs."""

    def __init__(self, framework, entry, workload, shape, seed: int):
        tf, self.traffic = framework.tf, framework.traffic
        self.tf, self.mode = tf, workload.inputs.value
        self.traffic.inputs = self.mode
        self.device = "/GPU:0" if framework.device == "cuda" else "/CPU:0"
        batch_size = workload.batch_size
        if self.mode == "loader":
            pool = entry.make_batch(2 * batch_size, shape, seed)
            dataset = (
                tf.data.Dataset.from_tensor_slices(pool)
                .shuffle(2 * batch_size, seed=seed)
                .repeat()
                .batch(batch_size, drop_remainder=True, num_parallel_calls=workload.loader_workers or None)
                .prefetch(tf.data.AUTOTUNE)
            )
            self._batches = iter(dataset)
        else:
            self.host_batch = entry.make_batch(batch_size, shape, seed)
            if self.mode == "device":
                with tf.device(self.device):
                    self.placed = {k: tf.identity(tf.constant(v)) for k, v in self.host_batch.items()}

    def next(self):
        if self.mode == "device":
            return self.placed
        host = next(self._batches) if self.mode == "loader" else self.host_batch
        self.traffic.to_device([_nbytes(v) for v in host.values()])
        with self.tf.device(self.device):
            return {k: self.tf.identity(v) for k, v in host.items()}

    def back(self, outputs):
        if self.mode == "device":
            return outputs
        arrays = [t.numpy() for t in self.tf.nest.flatten(outputs)]
        self.traffic.to_host([a.nbytes for a in arrays])
        return arrays


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
        self._step_fn = None  # the step's function (a tf.function unless eager): its traces are countable

    def init_device(self) -> None:
        if self.device == "cuda":
            self.tf.constant(0.0).numpy()  # TensorFlow creates its devices and contexts on first use

    def _compile(self, fn):
        if self.mode == "eager":
            return fn
        return self.tf.function(fn, jit_compile=self.mode == "xla")

    def _model_and_feed(self, entry, workload, shape, seed):
        self.keras.utils.set_random_seed(seed)
        self.model = self.load_weights(entry, entry.build(shape))
        self.mark("build")
        feed = TfFeed(self, entry, workload, shape, seed)
        self.mark("to_device")
        return self.model, feed

    def infer_step(self, entry, workload, shape, seed):
        model, feed = self._model_and_feed(entry, workload, shape, seed)
        forward = self._step_fn = self._compile(lambda batch: entry.forward(model, batch))

        def infer_step():
            self._last = forward(feed.next())
            return feed.back(self._last)

        return infer_step

    def train_step(self, entry, workload, shape, seed, distributed=False):
        if distributed:
            return super().train_step(entry, workload, shape, seed, distributed)
        tf, keras = self.tf, self.keras
        model, feed = self._model_and_feed(entry, workload, shape, seed)
        optimizer = keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9)
        if self.precision == "fp16":
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
        # Its state now, not inside the first call: a tf.function whose first call creates
        # variables is traced twice (once to create them, once without), doubling the first step.
        # Not marked: as PyTorch's lazily made state, it stays part of the first step's phase.
        optimizer.build(model.trainable_variables)

        def train(batch):
            with tf.GradientTape() as tape:
                loss = entry.loss(model, batch)
                scaled = optimizer.scale_loss(loss) if self.precision == "fp16" else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        compiled = self._step_fn = self._compile(train)

        def train_step():
            self._last = self._loss = compiled(feed.next())
            return self._loss

        return train_step

    def synchronize(self) -> None:
        # TensorFlow runs asynchronously on a GPU; reading the last result waits for it.
        if self._last is not None:
            self.tf.nest.map_structure(lambda t: t.numpy(), self._last)

    def tf32_enabled(self, entry) -> bool:
        return bool(self.tf.config.experimental.is_tensor_float_32_execution_enabled())  # True by default

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
