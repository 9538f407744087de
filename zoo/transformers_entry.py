"""Language models from transformers, random weights from their published configurations."""

from __future__ import annotations

from zoo.base import InputShape, TorchModel

# The core every transformers model class loads: one fork server imports it for all of them
# (ZooModel.libraries); each run imports its own model's classes.
TRANSFORMERS_CORE = ("transformers", "transformers.modeling_utils")


class TransformersLM(TorchModel):
    """A causal language model: next-token loss over a seeded batch of token ids."""

    task = "causal-lm"
    inputs = "text"
    workloads = ("infer", "train", "train_ddp", "generate")
    config_class: str  # transformers class names
    model_class: str
    vocab_size: int
    fixed: dict = {}  # config settings shared by every size

    def config(self):
        import transformers

        return getattr(transformers, self.config_class)(**(self.fixed | self.settings))

    libraries = TRANSFORMERS_CORE

    def import_framework(self) -> None:
        super().import_framework()
        import transformers

        getattr(transformers, self.config_class), getattr(transformers, self.model_class)  # lazily loaded modules

    def build(self, shape: InputShape = InputShape()):
        self.import_framework()
        import transformers

        return getattr(transformers, self.model_class)(self.config())

    def vocab(self) -> int:
        return self.settings.get("vocab_size", self.fixed.get("vocab_size", self.vocab_size))

    def make_batch(self, batch_size, shape, seed):
        import torch

        from zoo.torch_support import generator

        ids = torch.randint(0, self.vocab(), (batch_size, shape.seq_len), generator=generator(seed))
        return {"input_ids": ids, "labels": ids}

    def forward(self, model, batch):
        return model(input_ids=batch["input_ids"]).logits

    def loss(self, model, batch):
        return model(input_ids=batch["input_ids"], labels=batch["labels"]).loss

    def load_weights(self, model, path):
        from pathlib import Path

        if (Path(path) / "config.json").exists():  # a transformers checkpoint directory
            return type(model).from_pretrained(path)
        return super().load_weights(model, path)
