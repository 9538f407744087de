"""Every shipped model x workload x backend option runs end to end on tiny shapes (CPU)."""

import math

import pytest
from mlflow.tracking import MlflowClient

import zoo
from runners.parent import compose

from conftest import TINY, has_gpu, logged_runs, results_of, run_dirs


def _split_models() -> dict[str, list[str]]:
    """Every shipped model once, infer and train taking turns down the sorted list, so that
    both kinds run on both frameworks; each entry's own training and forward code is run for
    every model in-process below. One worker per model keeps the sweep to a few minutes."""
    models = compose.group_options("model")
    return {"infer": models[0::2], "train": models[1::2]}


@pytest.mark.slow
def test_every_shipped_model_runs_through_the_worker_on_tiny_shapes(cli, results_dir):
    split = _split_models()
    assert {zoo.get(m).framework for m in split["train"]} >= {"pytorch", "tensorflow"}
    assert {zoo.get(m).framework for m in split["infer"]} >= {"pytorch", "tensorflow"}
    backends = "cpu" if not has_gpu() else "cpu,native"
    for workload, models in split.items():
        done = cli("--multirun", f"model={','.join(models)}", f"workload={workload}", f"backend={backends}", *TINY,
                   timeout=1200)  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = results_of(results_dir)
    expected = len(compose.group_options("model")) * len(backends.split(","))
    assert len(results) == expected
    assert {(r.model.name, r.workload) for r in results} == {(m, w) for w, ms in split.items() for m in ms}
    for result in results:
        assert result.ok, result.error
        assert result.model.size == "tiny" and result.value("throughput") > 0
        entry = zoo.get(result.model.name)
        if entry.inputs == "text":
            assert result.value("tokens_per_s") == pytest.approx(result.value("throughput") * 16)
        if entry.framework == "pytorch":
            assert result.model.params > 0
            assert result.environment.framework["torch"]
        if entry.framework == "tensorflow":
            assert result.environment.framework["mode"] == "graph"  # eager and xla: test_zoo_library
        if result.workload == "train" and entry.framework != "python":
            # finite; a tiny model can fit its few samples to a loss of 0 within the measured steps
            assert math.isfinite(result.measurement.final_loss) and result.measurement.final_loss >= 0

    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id])
    sweeps = [r for r in runs if r.data.tags.get("kind") == "sweep"]  # one parent run per sweep
    assert len(sweeps) == 2
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in {s.info.run_id for s in sweeps}]
    assert len(children) == expected and {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_every_entry_trains_and_infers_on_tiny_shapes(framework):
    """Each entry's own loss, gradients and forward pass, in this process (no worker start-up)."""
    shape = zoo.InputShape(seq_len=16, image_size=32)
    for name in compose.group_options("model"):
        entry = zoo.get(name)("tiny")
        if entry.framework != framework:
            continue
        loaded = zoo.load(name, size="tiny", shape=shape)
        batch = loaded.make_batch(2)
        if framework == "pytorch":
            import torch

            loss = entry.loss(loaded.model.train(), batch)
            loss.backward()
            grads = [p.grad for p in loaded.model.parameters() if p.requires_grad]
            assert torch.isfinite(loss) and any(g is not None and g.abs().sum() > 0 for g in grads), name
            with torch.inference_mode():
                assert entry.forward(loaded.model.eval(), batch).shape[0] == 2, name
        else:
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss = entry.loss(loaded.model, batch)
            grads = tape.gradient(loss, loaded.model.trainable_variables)
            assert bool(tf.math.is_finite(loss)) and any(g is not None for g in grads), name
            assert entry.forward(loaded.model, batch).shape[0] == 2, name


def test_tracking_none_writes_results_but_no_store(cli, results_dir):
    done = cli("model=dummy", "backend=cpu", "tracking=none", *TINY)
    assert done.returncode == 0
    assert len(run_dirs(results_dir)) == 1 and not logged_runs(results_dir)
