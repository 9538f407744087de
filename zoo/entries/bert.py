"""BERT for sequence classification (transformers), random weights from its config."""
from zoo.base import ZooModel, models


@models.register
class Bert(ZooModel):
    name = "bert"
    framework = "pytorch"
    task = "text-classification"
    inputs = "text"
    summary = "BERT encoder (transformers) with a 2-class head; the base size is bert-base-uncased."
    sizes = {
        "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
        "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
    }
    default_size = "base"
    max_seq_len = 512
    vocab_size = 30522
    num_labels = 2

    def build(self):
        from zoo.torch_support import ensure_torchvision

        ensure_torchvision()  # transformers imports torchvision when it is installed
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(vocab_size=self.vocab_size, num_labels=self.num_labels, **self.settings)
        return BertForSequenceClassification(config)

    def make_batch(self, batch_size, shape, seed):
        import torch

        from zoo.torch_support import generator

        g = generator(seed)
        return {
            "input_ids": torch.randint(0, self.vocab_size, (batch_size, shape.seq_len), generator=g),
            "attention_mask": torch.ones(batch_size, shape.seq_len, dtype=torch.long),
            "labels": torch.randint(0, self.num_labels, (batch_size,), generator=g),
        }

    def forward(self, model, batch):
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def loss(self, model, batch):
        import torch.nn.functional as F

        return F.cross_entropy(self.forward(model, batch).float(), batch["labels"])
