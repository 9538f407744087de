"""BERT for sequence classification (transformers), random weights from its config."""

from zoo.base import TorchModel, models
from zoo.transformers_entry import TRANSFORMERS_CORE


@models.register
class Bert(TorchModel):
    name = "bert"
    task = "text-classification"
    inputs = "text"
    exported_to = ("onnxruntime", "mnn")
    summary = "BERT encoder (transformers) with a 2-class head; the base size is bert-base-uncased."
    sizes = {
        "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
        "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
    }
    default_size = "base"
    max_seq_len = 512
    vocab_size = 30522
    num_labels = 2
    params = 109_483_778
    flops_per_sample = 22_348_434_432.0
    source = (
        "bert-base-uncased: BertModel 109,482,240 params + 2-class head; FLOPs ~ 2 x matmul params x tokens + attention"
    )

    libraries = TRANSFORMERS_CORE  # one fork server with the other transformers entries

    def import_framework(self):
        super().import_framework()
        from transformers import BertConfig, BertForSequenceClassification  # noqa: F401  (the lazy module loads them)

    def build(self, shape=None):
        self.import_framework()
        from transformers import BertConfig, BertForSequenceClassification

        return BertForSequenceClassification(
            BertConfig(vocab_size=self.vocab_size, num_labels=self.num_labels, **self.settings)
        )

    def make_batch(self, batch_size, shape, seed):
        import torch

        from zoo.torch_support import generator

        g = generator(seed)
        # No attention mask: unpadded sequences, the same as a mask of ones.
        return {
            "input_ids": torch.randint(0, self.vocab_size, (batch_size, shape.seq_len), generator=g),
            "labels": torch.randint(0, self.num_labels, (batch_size,), generator=g),
        }

    def forward(self, model, batch):
        return model(input_ids=batch["input_ids"]).logits

    def loss(self, model, batch):
        import torch.nn.functional as F

        return F.cross_entropy(self.forward(model, batch).float(), batch["labels"])

    def load_weights(self, model, path):
        from pathlib import Path

        if (Path(path) / "config.json").exists():  # a transformers checkpoint directory
            return type(model).from_pretrained(path)
        return super().load_weights(model, path)
