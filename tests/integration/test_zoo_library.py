"""The zoo used as a library (customer demos), generation, the demo, MFU."""

import os
import subprocess
import sys

import pytest

import zoo

from conftest import REPO, TINY, results_of


def test_load_gives_model_batch_factory_and_loss_without_any_runner():
    import torch

    loaded = zoo.load("resnet50", size="tiny", shape=zoo.InputShape(image_size=32))
    batch = loaded.make_batch(2)
    assert batch["images"].shape == (2, 3, 32, 32)
    loss = loaded.loss(loaded.model, batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    code = (
        "import sys, zoo; m = zoo.load('bert', size='tiny'); m.loss(m.model, m.make_batch(2)); "
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('runners', 'hydra', 'mlflow')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr[-1500:]  # a fresh interpreter: no runner


def test_pretrained_weights_load_from_a_checkpoint_the_test_saved(tmp_path):
    import torch

    source = zoo.load("bert", size="tiny", seed=1)
    path = tmp_path / "bert-tiny.pt"
    torch.save(source.model.state_dict(), path)
    other = zoo.load("bert", size="tiny", seed=2)  # different random weights...
    batch = other.make_batch(2)
    assert not torch.equal(other.forward(other.model.eval(), batch), source.forward(source.model.eval(), batch))
    restored = zoo.load("bert", size="tiny", seed=2, weights=path)  # ...until the checkpoint is loaded
    assert torch.equal(restored.forward(restored.model.eval(), batch), source.forward(source.model.eval(), batch))


@pytest.mark.slow
def test_keras_weights_load_too(tmp_path):
    source = zoo.load("keras_bert", size="tiny", seed=1)
    path = tmp_path / "keras_bert.weights.h5"
    source.model.save_weights(str(path))
    restored = zoo.load("keras_bert", size="tiny", seed=2, weights=path)
    batch = source.make_batch(2)
    assert (restored.forward(restored.model, batch).numpy() == source.forward(source.model, batch).numpy()).all()


def test_a_run_can_use_local_pretrained_weights(cli, results_dir, tmp_path):
    import torch

    path = tmp_path / "w.pt"
    torch.save(zoo.load("bert", size="tiny").model.state_dict(), path)
    assert cli("model=bert", "backend=cpu", "tracking=none", *TINY, f"model.weights={path}").returncode == 0
    done = cli("model=bert", "backend=cpu", *TINY, "model.weights=/nonexistent/w.pt")
    assert done.returncode == 2 and "model.weights=/nonexistent/w.pt does not exist" in done.stderr


@pytest.mark.parametrize("model", ["llama", "gpt2"])
def test_generate_reports_time_to_first_token_and_tokens_per_second(cli, results_dir, model):
    done = cli(f"model={model}", "workload=generate", "backend=cpu", *TINY, "tracking=none", "workload.new_tokens=4")
    assert done.returncode == 0, done.stderr[-2000:]
    [result] = results_of(results_dir)
    assert result.value("ttft_ms_p50") > 0 and result.value("tpot_ms_mean") > 0
    assert result.value("output_tokens_per_s") == pytest.approx(result.value("throughput") * 4)
    assert "ttft" in done.stderr and "tokens/s" in done.stderr


def test_generate_is_refused_for_models_without_it(cli):
    done = cli("model=bert", "workload=generate")
    assert done.returncode == 2 and "model 'bert' has no workload 'generate'" in done.stderr
    assert "models with generate: gpt2, llama" in done.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["model=resnet50", "model.size=tiny", "input=IMAGE"], "1. class"),
        (["model=bert", "model.size=tiny", "input=a sentence about virtual GPUs"], "1. class"),
    ],
)
def test_demo_runs_a_real_inference(tmp_path, args, expected):
    import numpy as np
    from PIL import Image

    image = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((240, 320, 3)) * 255).astype("uint8")).save(image)
    args = [a.replace("IMAGE", str(image)) for a in args]
    env = {**os.environ, "VGPU_BENCH_RESULTS": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "runners.cli.demo", *args], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout and "inference: median" in done.stdout


@pytest.mark.slow
# graph, the default: every Keras entry in the shipped sweep. XLA compiles the same step
# function whatever the kind; inference keeps its compilation short on a 2-core machine.
@pytest.mark.parametrize("mode, workload", [("eager", "train"), ("xla", "infer")])
def test_tensorflow_execution_modes(cli, results_dir, mode, workload):
    done = cli(
        "model=keras_mobilenet_v2", f"workload={workload}", "backend=cpu", "tracking=none", *TINY,
        f"workload.tf_mode={mode}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    [result] = results_of(results_dir)
    assert result.environment.framework["mode"] == mode and result.model.framework == "tensorflow"
    assert result.workload == workload and result.value("throughput") > 0
    if workload == "train":
        assert result.measurement.final_loss > 0
