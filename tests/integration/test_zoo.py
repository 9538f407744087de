"""The zoo entries against upstream published figures, and their determinism."""

import pytest

import zoo
from zoo.base import InputShape

torch = pytest.importorskip("torch")


def _params(model):
    return sum(p.numel() for p in model.parameters())


def test_resnet50_matches_torchvision_published_params():
    from zoo.torch_support import ensure_torchvision

    ensure_torchvision()
    from torchvision.models import ResNet50_Weights

    model = zoo.get("resnet50")().build()
    assert _params(model) == ResNet50_Weights.IMAGENET1K_V2.meta["num_params"] == 25_557_032


def test_bert_base_matches_the_transformers_reference_config():
    from transformers import BertConfig

    reference = BertConfig()  # the defaults are bert-base-uncased
    entry = zoo.get("bert")()
    for key, value in entry.settings.items():
        assert getattr(reference, key) == value
    assert _params(entry.build()) == 109_483_778  # BertModel 109,482,240 + 2-class head


def test_torchvision_and_transformers_import_next_to_cpu_torch():
    import subprocess
    import sys

    code = (
        "from zoo.torch_support import ensure_torchvision; ensure_torchvision(); "
        "import torchvision.transforms.v2, torchvision.models; from transformers import BertModel; "
        "torchvision.models.mobilenet_v3_small(); print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)  # a fresh interpreter
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize("name", ["bert", "resnet50"])
def test_batches_and_weights_are_seeded(name):
    entry = zoo.get(name)("tiny")
    shape = InputShape(seq_len=8, image_size=32)
    a, b, c = (entry.make_batch(2, shape, seed) for seed in (0, 0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = entry.build().eval()
        with torch.no_grad():
            losses.append(entry.loss(model, a).item())
    assert losses[0] == losses[1]


def test_shape_limits_are_checked_before_running():
    with pytest.raises(ValueError, match="maximum of 512"):
        zoo.get("bert")().check_shape(InputShape(seq_len=1024))
    with pytest.raises(ValueError, match="minimum of 32"):
        zoo.get("resnet50")().check_shape(InputShape(image_size=16))


def test_tiny_efficientnet_b0_is_one_block_per_stage_at_a_quarter_width():
    from torchvision.ops.misc import SqueezeExcitation

    model = zoo.get("efficientnet_b0")("tiny").build(InputShape(image_size=32))
    stages = model.features[1:-1]  # between the stem and the head
    assert [len(stage) for stage in stages] == [1] * 7  # B0's 1, 2, 2, 3, 3, 4, 1 blocks
    assert sum(isinstance(m, SqueezeExcitation) for m in model.modules()) == 7
    assert model.features[0][0].out_channels == 8  # B0's stem: 32
    assert _params(model) == 126_822  # the full B0 with 10 classes: 4,020,358


def test_tiny_gpt2_predicts_over_a_tiny_vocabulary():
    entry = zoo.get("gpt2")("tiny")
    shape = InputShape(seq_len=16)
    model = entry.build(shape)
    batch = entry.make_batch(2, shape, seed=0)
    assert entry.vocab() == model.config.vocab_size == 1024  # as llama's tiny; the real one: 50,257
    assert int(batch["input_ids"].max()) < 1024
    with torch.inference_mode():
        assert entry.forward(model, batch).shape[-1] == 1024


def test_every_entrys_libraries_are_modules_it_can_import():
    """What a fork server imports for an entry (`libraries`, its key for sharing a server)."""
    import importlib.util

    from zoo.base import models
    from zoo.torch_support import ensure_torchvision

    ensure_torchvision()
    for name in models.names():
        libraries = zoo.get(name).libraries
        assert isinstance(libraries, tuple), (name, libraries)  # hashable: part of the server's key
        assert all(importlib.util.find_spec(module) for module in libraries), (name, libraries)
