"""The Keras entries' presets and the TensorFlow adapter's steps, in this process (no worker)."""

import importlib.util

import numpy as np
import pytest

import zoo
from runners.config import WorkloadConfig
from runners.worker.frameworks import frameworks

from conftest import TINY, results_of

# Not imported here: TensorFlow loaded into a test process at collection makes MNN's converter
# abort in it later (two protobuf copies); the in-process MNN test runs first (slow-marked).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="no TensorFlow")

SHAPE = zoo.InputShape(seq_len=16, image_size=32)


def test_tiny_keras_resnet50_is_the_bottleneck_design_with_one_block_per_stage():
    model = zoo.load("keras_resnet50", size="tiny", shape=SHAPE).model
    blocks = {"_".join(layer.name.split("_")[:2]) for layer in model.layers if "_block" in layer.name}
    assert blocks == {"conv2_block1", "conv3_block1", "conv4_block1", "conv5_block1"}
    # Bottleneck widths 16, 32, 64, 128 (torch tiny's), each block's output 4x that.
    widths = [model.get_layer(f"conv{stage}_block1_{conv}_conv").filters for stage in (2, 3, 4, 5) for conv in (1, 3)]
    assert widths == [16, 64, 32, 128, 64, 256, 128, 512]
    assert model.count_params() == 529_898  # the full ResNet50 with 10 classes: 23,608,202


def test_tiny_keras_mobilenet_v2_is_the_first_inverted_residual_block_of_each_stage():
    model = zoo.load("keras_mobilenet_v2", size="tiny", shape=SHAPE).model
    depthwise = [layer.name for layer in model.layers if layer.name.endswith("_depthwise")]
    assert depthwise == ["expanded_conv_depthwise", *(f"block_{i}_depthwise" for i in range(1, 7))]
    # MobileNetV2's stage widths 16..320 at width 0.35, rounded to multiples of 8 as Keras rounds them
    widths = [
        model.get_layer(name).filters
        for name in ("expanded_conv_project", *(f"block_{i}_project" for i in range(1, 7)))
    ]
    assert widths == [8, 8, 16, 24, 32, 56, 112]
    assert model.count_params() == 265_002  # the full depth at width 0.35 with 10 classes: 423,018


def test_full_keras_resnet50_is_keras_applications_resnet50():
    import keras

    ours = zoo.get("keras_resnet50")().build(SHAPE)
    upstream = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classifier_activation=None)
    assert [(w.path, w.shape) for w in ours.weights] == [(w.path, w.shape) for w in upstream.weights]


@pytest.mark.parametrize("name", ["keras_resnet50", "keras_mobilenet_v2"])
def test_keras_weights_are_seeded(name):
    a, b, c = (zoo.load(name, size="tiny", shape=SHAPE, seed=seed).model.get_weights() for seed in (1, 1, 2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("workload", ["train", "infer"])
def test_a_graph_step_is_traced_once(workload):
    # A tf.function traced again per step, or twice on its first call (a train step whose first
    # call creates the optimizer's variables), pays the tracing and graph optimization again.
    framework = frameworks.get("tensorflow")("cpu", "fp32", None)  # threads: TF is initialized here
    make = framework.train_step if workload == "train" else framework.infer_step
    step = make(zoo.get("keras_resnet50")("tiny"), WorkloadConfig(kind=workload, batch_size=2), SHAPE, seed=0)
    for _ in range(3):
        step()
    framework.synchronize()
    assert framework._step_fn.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_a_forked_and_a_fresh_worker_train_from_the_same_seeded_weights(cli, results_dir):
    # The same steps (TINY: one warm-up, one window of two) from the same weights and batch
    # give the same loss, bit for bit; unseeded weights would differ between the processes.
    done = cli("--multirun", "model=keras_resnet50", "workload=train", "backend=cpu", "tracking=none", *TINY,
               "fork_server=false,true")  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = {bool((r.details.get("startup") or {}).get("forked")): r for r in results_of(results_dir)}
    assert set(results) == {False, True}, "one forked, one started afresh"
    assert results[False].measurement.steps == results[True].measurement.steps == 2
    assert results[False].measurement.final_loss == results[True].measurement.final_loss > 0
