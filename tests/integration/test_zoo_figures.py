"""Every entry's published figures, recomputed from the model and checked against upstream."""

import json
import subprocess
import sys

import pytest

import zoo
from zoo.figures import keras_figures, torch_figures

from conftest import REPO

TORCHVISION = {
    "resnet50": ("ResNet50_Weights", "IMAGENET1K_V2"),
    "mobilenet_v3_large": ("MobileNet_V3_Large_Weights", "IMAGENET1K_V2"),
    "efficientnet_b0": ("EfficientNet_B0_Weights", "IMAGENET1K_V1"),
    "vit_b_16": ("ViT_B_16_Weights", "IMAGENET1K_V1"),
}
# Parameter counts published with the upstream checkpoints of these configurations.
PUBLISHED_PARAMS = {
    "bert": 109_482_240 + 768 * 2 + 2,
    "gpt2": 124_439_808,
    "t5": 60_506_624,
    "llama": 1_235_814_400,
    "keras_resnet50": 25_636_712,
    "keras_mobilenet_v2": 3_538_984,
    "keras_bert": 109_483_778,
}


def test_zoo_list_json_has_at_least_12_models_in_both_frameworks():
    done = subprocess.run([sys.executable, "-m", "zoo", "list", "--json"], cwd=REPO, capture_output=True, text=True)
    cards = json.loads(done.stdout)
    assert len(cards) >= 12 and {c["framework"] for c in cards} == {"pytorch", "tensorflow"}
    assert all(
        set(c) == {"name", "framework", "task", "params", "flops_per_sample", "workloads", "runtimes"} for c in cards
    )
    runtimes = {c["name"]: c["runtimes"] for c in cards}
    assert runtimes["resnet50"] == ["pytorch", "onnxruntime", "mnn"] and runtimes["t5"] == ["pytorch"]
    assert all(c["params"] > 0 and c["flops_per_sample"] > 0 for c in cards)
    assert "torch" not in done.stderr  # listing imports no framework (fast)


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_entries_match_the_weights_metadata(name):
    from zoo.torch_support import ensure_torchvision

    ensure_torchvision()
    import torchvision.models as tvm

    enum, member = TORCHVISION[name]
    meta = getattr(getattr(tvm, enum), member).meta
    entry = zoo.get(name)()
    params, flops = torch_figures(entry)
    assert params == entry.params == meta["num_params"]
    assert flops == entry.flops_per_sample
    assert flops / 1e9 == pytest.approx(2 * meta["_ops"], rel=2e-3)  # torchvision publishes GMACs


def _linear_weights(model) -> int:
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def _meta(entry):
    import torch

    with torch.device("meta"):
        return entry.build()


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "t5", "dlrm"])
def test_pytorch_entries_match_published_params_and_analytic_flops(name):
    entry = zoo.get(name)()
    params, flops = torch_figures(entry)
    assert params == entry.params and flops == entry.flops_per_sample
    if name in PUBLISHED_PARAMS:
        assert params == PUBLISHED_PARAMS[name]
    t = 128  # the default sequence length
    s = entry.settings
    if name == "bert":  # 2 x tokens x encoder matmuls + QK^T and AV + pooler and head on one token
        d, layers = s["hidden_size"], s["num_hidden_layers"]
        expected = (
            2 * t * layers * (4 * d * d + 2 * d * s["intermediate_size"])
            + layers * 4 * t * t * d
            + 2 * d * d
            + 2 * d * 2
        )
    elif name == "gpt2":
        d, layers, vocab = 768, 12, 50257
        expected = 2 * t * layers * 12 * d * d + layers * 4 * t * t * d + 2 * t * d * vocab
    elif name == "llama":
        d, layers, kv = (
            s["hidden_size"],
            s["num_hidden_layers"],
            s["num_key_value_heads"] * s["hidden_size"] // s["num_attention_heads"],
        )
        per_layer = 2 * d * d + 2 * d * kv + 3 * d * s["intermediate_size"]
        expected = 2 * t * layers * per_layer + layers * 4 * t * t * d + 2 * t * d * 128256
    elif name == "t5":
        d, dff, layers, dec, vocab = 512, 2048, 6, 32, 32128  # targets are a quarter of the input
        encoder = 2 * t * layers * (4 * d * d + 2 * d * dff) + layers * 4 * t * t * d
        decoder = (
            2 * dec * layers * (6 * d * d + 2 * d * dff)
            + 2 * t * layers * 2 * d * d
            + layers * 4 * dec * dec * d
            + layers * 4 * dec * t * d
        )
        expected = encoder + decoder + 2 * dec * d * vocab
    else:  # dlrm: MLPs and the pairwise dot products of 27 vectors
        expected = 2 * _linear_weights(_meta(entry)) + 27 * 27 * 16 * 2
        tables = sum(s["tables"]) * s["dim"]
        assert params == tables + sum(p.numel() for n, p in _meta(entry).named_parameters() if "embeddings" not in n)
        assert tables == 33_762_577 * 16  # the Criteo Kaggle cardinalities
    assert flops == expected


def test_llama_8b_preset_matches_llama_3_1_8b():
    assert torch_figures(zoo.get("llama")("8b"))[0] == 8_030_261_248


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, paper_flops",
    [("keras_resnet50", 2 * 3.8e9), ("keras_mobilenet_v2", 2 * 300e6), ("keras_bert", 22_348_434_432)],
)
def test_keras_entries_match_published_params_and_flops(name, paper_flops):
    entry = zoo.get(name)()
    params, flops = keras_figures(entry)
    assert params == entry.params == PUBLISHED_PARAMS[name]
    assert flops == pytest.approx(entry.flops_per_sample, rel=1e-3)
    assert flops == pytest.approx(paper_flops, rel=0.05)  # the profiler also counts elementwise ops


def test_keras_bert_has_exactly_the_parameters_of_the_pytorch_bert():
    assert zoo.get("keras_bert").params == zoo.get("bert").params


def test_model_cards_are_up_to_date():
    from zoo.__main__ import cards_markdown

    assert (REPO / "docs" / "zoo.md").read_text() == cards_markdown(), "docs/zoo.md is stale: run `make docs`"
