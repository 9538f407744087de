"""Recount an entry's parameters and forward FLOPs per sample from the model itself, at
its default size and input shape. PyTorch models are built on the meta device (no
memory, no weights); FLOPs come from torch's FlopCounterMode (2 per multiply-add)."""

from __future__ import annotations

from zoo.base import InputShape, ZooModel


def torch_figures(entry: ZooModel, shape: InputShape = InputShape()) -> tuple[int, float]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = entry.build(shape)
    params = sum(p.numel() for p in model.parameters())
    batch = {k: v.to("meta") for k, v in entry.make_batch(1, shape, seed=0).items()}
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        entry.forward(model.eval(), batch)
    return params, float(counter.get_total_flops())


def keras_figures(entry: ZooModel, shape: InputShape = InputShape()) -> tuple[int, float]:
    """Keras: count_params, and the float operations TensorFlow's profiler counts in the
    forward graph (it counts a multiply-add as 2 FLOPs)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    model = entry.build(shape)
    batch = entry.make_batch(1, shape, seed=0)
    inputs = entry.model_inputs(batch)
    specs = tf.nest.map_structure(lambda x: tf.TensorSpec(x.shape, tf.as_dtype(x.dtype)), inputs)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(specs)
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    flops = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options)
    return int(model.count_params()), float(flops.total_float_ops)


def figures(entry: ZooModel) -> tuple[int, float]:
    return keras_figures(entry) if entry.framework == "tensorflow" else torch_figures(entry)
