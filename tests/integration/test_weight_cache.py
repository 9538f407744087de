"""The weight cache (runners/worker/weight_cache.py): a model built from it has exactly the
weights, ties and random generator state of a fresh build with the same seed; any other
key is another file; a file that does not fit is never used."""

import pytest
import torch

import zoo
from runners.worker import weight_cache
from zoo.base import InputShape, TorchModel

from conftest import TINY, results_of

SHAPE = InputShape(seq_len=16, image_size=32)


def _fresh(entry, seed):
    torch.manual_seed(seed)
    return entry.build(SHAPE), torch.get_rng_state()


def _state(model):
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    return tensors


def assert_identical(a, b):
    one, other = _state(a), _state(b)
    assert sorted(one) == sorted(other)
    for name, tensor in one.items():
        assert tensor.device.type == "cpu" and other[name].device.type == "cpu", name
        assert tensor.dtype == other[name].dtype and tensor.requires_grad == other[name].requires_grad, name
        assert torch.equal(tensor, other[name]), name


@pytest.mark.parametrize("name", ["bert", "resnet50", "gpt2"])
def test_a_cached_build_is_bit_identical_to_a_fresh_one(name, tmp_path):
    entry = zoo.get(name)("tiny")
    fresh, fresh_rng = _fresh(entry, 3)

    written, source = weight_cache.build(entry, SHAPE, 3, tmp_path)
    assert source["weights"] == "init" and source["cached"], source
    assert torch.equal(torch.get_rng_state(), fresh_rng)
    assert_identical(fresh, written)

    torch.manual_seed(12345)  # whatever the generator held before: the load restores it
    loaded, source = weight_cache.build(entry, SHAPE, 3, tmp_path)
    assert source == {"weights": "cache", "file": source["file"]} and (tmp_path / source["file"]).exists()
    assert torch.equal(torch.get_rng_state(), fresh_rng)  # dropout after the build draws the same masks
    assert_identical(fresh, loaded)
    if name == "gpt2":  # tied embeddings stay one tensor
        assert loaded.lm_head.weight is loaded.transformer.wte.weight
    batch = entry.make_batch(2, SHAPE, 0)
    fresh.eval(), loaded.eval()
    with torch.inference_mode():
        assert torch.equal(entry.forward(fresh, batch), entry.forward(loaded, batch))


def test_another_seed_or_size_is_another_file_with_other_weights(tmp_path):
    bert = zoo.get("bert")
    zero, first = weight_cache.build(bert("tiny"), SHAPE, 0, tmp_path)
    one, second = weight_cache.build(bert("tiny"), SHAPE, 1, tmp_path)
    assert second["weights"] == "init" and second["file"] != first["file"]
    weights = _state(zero)["bert.encoder.layer.0.attention.self.query.weight"]
    assert not torch.equal(weights, _state(one)["bert.encoder.layer.0.attention.self.query.weight"])
    assert_identical(_fresh(bert("tiny"), 1)[0], weight_cache.build(bert("tiny"), SHAPE, 1, tmp_path)[0])
    other_shape = weight_cache.key(bert("tiny"), InputShape(seq_len=32), 0)
    assert weight_cache.path_for(tmp_path, other_shape).name != first["file"]
    base = weight_cache.key(bert("base"), SHAPE, 0)
    assert weight_cache.path_for(tmp_path, base).name != first["file"]


def test_a_file_that_does_not_fit_is_not_used(tmp_path):
    entry = zoo.get("resnet50")("tiny")
    fresh = _fresh(entry, 0)[0]
    _, zero = weight_cache.build(entry, SHAPE, 0, tmp_path)
    _, one = weight_cache.build(entry, SHAPE, 1, tmp_path)
    # Another key's file under this key's name: its metadata says so.
    (tmp_path / one["file"]).replace(tmp_path / zero["file"])
    model, source = weight_cache.build(entry, SHAPE, 0, tmp_path)
    assert source["weights"] == "init" and "another key" in source["cache_unusable"]
    assert_identical(fresh, model)
    # A broken file; the fresh build rewrote the file, which is used again afterwards.
    (tmp_path / zero["file"]).write_bytes(b"not a safetensors file")
    model, source = weight_cache.build(entry, SHAPE, 0, tmp_path)
    assert source["weights"] == "init" and source["cache_unusable"] and source["cached"]
    assert_identical(fresh, model)
    model, source = weight_cache.build(entry, SHAPE, 0, tmp_path)
    assert source["weights"] == "cache"
    assert_identical(fresh, model)


def test_random_fills_are_skipped_on_meta_only_and_restored_after():
    before = {name: getattr(torch.Tensor, name) for name in weight_cache._RANDOM_FILLS}
    host = torch.zeros(64)
    with weight_cache._on_meta():
        meta = torch.empty(64).normal_()
        host.normal_()  # a host tensor still fills
    assert meta.is_meta and bool(host.ne(0).any())
    assert {name: getattr(torch.Tensor, name) for name in weight_cache._RANDOM_FILLS} == before
    assert not set(weight_cache._RANDOM_FILLS) & set(vars(torch.Tensor))


class _StrayTensor(TorchModel):
    """Keeps a tensor outside its parameters and buffers: a meta build cannot be filled in."""

    name, task, inputs, sizes, default_size = "stray", "test", "none", {"one": {}}, "one"

    def build(self, shape=InputShape()):
        model = torch.nn.Linear(4, 4)
        model.scale = torch.rand(4)
        return model


def test_a_model_the_cache_cannot_rebuild_is_not_cached(tmp_path):
    model, source = weight_cache.build(_StrayTensor(), SHAPE, 0, tmp_path)
    assert source["weights"] == "init" and "scale is a tensor outside" in source["not_cached"]
    assert not model.scale.is_meta and not list(tmp_path.iterdir())


def test_the_size_cap_and_off(tmp_path, monkeypatch):
    entry = zoo.get("resnet50")("tiny")
    monkeypatch.setenv(weight_cache.MAX_MB_VARIABLE, "1")
    _, source = weight_cache.build(entry, SHAPE, 0, tmp_path)
    assert "over the cache's 1 MiB" in source["not_cached"] and not list(tmp_path.iterdir())
    monkeypatch.setenv(weight_cache.MAX_MB_VARIABLE, "0")
    assert weight_cache.build(entry, SHAPE, 0, tmp_path)[1]["not_cached"] == "cache off"
    assert weight_cache.build(entry, SHAPE, 0, None)[1]["not_cached"] == "cache off"


def test_a_cache_folder_that_cannot_be_written_leaves_the_run_as_it_was(tmp_path):
    entry = zoo.get("resnet50")("tiny")
    (tmp_path / "a-file").write_text("")  # as root, a read-only folder would still be written
    model, source = weight_cache.build(entry, SHAPE, 0, tmp_path / "a-file" / "weights")
    assert source["weights"] == "init" and source["not_cached"].startswith("could not write the cache")
    assert_identical(_fresh(entry, 0)[0], model)


def test_workers_train_the_same_from_a_cached_build(cli, results_dir):
    """Through parent and worker: the second run loads what the first wrote, says so, and its
    training (dropout included) ends on the very same loss."""
    done = cli("--multirun", "model=bert", "workload=train", "backend=cpu", "tracking=none", "label=a,b", *TINY)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = {r.config["label"]: r for r in results_of(results_dir)}
    assert runs["a"].details["startup"]["weights"] == "init" and runs["a"].details["startup"]["cached"]
    assert runs["b"].details["startup"]["weights"] == "cache"
    assert (results_dir / ".cache" / "weights" / runs["b"].details["startup"]["file"]).exists()
    assert runs["a"].measurement.final_loss == runs["b"].measurement.final_loss
    assert runs["a"].measurement.steps == runs["b"].measurement.steps


def test_every_torch_entry_imports_its_libraries_before_a_meta_build():
    """In a fresh interpreter, as a worker loading from the cache: each entry's build on meta
    finds its libraries imported by its import_framework() (a build that imports is refused,
    since the modules it loads would make their import-time tensors on meta)."""
    import subprocess
    import sys

    script = (
        "import zoo\n"
        "from runners.worker import weight_cache\n"
        "from zoo.base import InputShape\n"
        "from zoo.transformers_entry import TransformersLM\n"
        "names = [n for n in zoo.list() if zoo.get(n).framework == 'pytorch']\n"
        "names.sort(key=lambda n: (n == 'bert' or issubclass(zoo.get(n), TransformersLM), n))\n"  # torch alone first
        "for n in names:\n"
        "    entry = zoo.get(n)('tiny')\n"
        "    model = weight_cache._skeleton(entry, InputShape(seq_len=16, image_size=32))\n"
        "    assert all(t.is_meta for t in model.parameters()), n\n"
        "    print(n)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"bert", "resnet50", "gpt2", "dlrm", "vit_b_16"} <= set(done.stdout.split())
