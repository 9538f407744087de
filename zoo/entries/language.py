"""Language models: GPT-2 (decoder), T5 (encoder-decoder), Llama (decoder, GQA + RoPE)."""

from zoo.base import InputShape, models
from zoo.transformers_entry import TransformersLM


@models.register
class GPT2(TransformersLM):
    name = "gpt2"
    exported_to = ("onnxruntime",)
    summary = "GPT-2 causal language model (transformers); small is the 124M-parameter gpt2."
    config_class, model_class = "GPT2Config", "GPT2LMHeadModel"
    vocab_size = 50257
    # tiny: llama's tiny vocabulary too; with GPT-2's 50,257 words the logits took most of a
    # 620 ms training step here (batch 8 x 128 tokens)
    sizes = {
        "small": dict(),
        "tiny": dict(n_embd=128, n_layer=2, n_head=2, vocab_size=1024, bos_token_id=1023, eos_token_id=1023),
    }
    default_size = "small"
    max_seq_len = 1024
    params = 124_439_808
    flops_per_sample = 32_228_179_968.0
    source = "gpt2 (openai-community/gpt2): 124,439,808 params, tied embeddings"


@models.register
class Llama(TransformersLM):
    name = "llama"
    summary = "Llama-architecture decoder (RMSNorm, RoPE, SwiGLU, grouped-query attention); 1b = Llama 3.2 1B."
    config_class, model_class = "LlamaConfig", "LlamaForCausalLM"
    vocab_size = 128256
    fixed = dict(vocab_size=128256, rope_theta=500000.0, max_position_embeddings=131072, rms_norm_eps=1e-5)
    sizes = {
        "1b": dict(
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            tie_word_embeddings=True,
        ),
        "8b": dict(
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            tie_word_embeddings=False,
        ),
        "tiny": dict(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=True,
            vocab_size=1024,
        ),
    }
    default_size = "1b"
    max_seq_len = 131072
    params = 1_235_814_400
    flops_per_sample = 318_498_668_544.0
    source = "meta-llama/Llama-3.2-1B config: 1,235,814,400 params (8b preset: Llama 3.1 8B, 8,030,261,248)"


@models.register
class T5(TransformersLM):
    name = "t5"
    task = "text2text"
    workloads = ("infer", "train", "train_ddp")
    summary = "T5 encoder-decoder (transformers); small is t5-small. Targets are a quarter of the input length."
    config_class, model_class = "T5Config", "T5ForConditionalGeneration"
    vocab_size = 32128
    fixed = dict(vocab_size=32128)
    sizes = {
        "small": dict(d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_heads=8),
        "tiny": dict(d_model=128, d_ff=256, d_kv=32, num_layers=2, num_heads=2),
    }
    default_size = "small"
    max_seq_len = 4096
    params = 60_506_624
    flops_per_sample = 8_363_442_176.0
    source = "google-t5/t5-small: 60,506,624 params, tied embeddings"

    def make_batch(self, batch_size, shape: InputShape, seed):
        import torch

        from zoo.torch_support import generator

        g = generator(seed)
        target = max(2, shape.seq_len // 4)
        labels = torch.randint(0, self.vocab_size, (batch_size, target), generator=g)
        return {
            "input_ids": torch.randint(0, self.vocab_size, (batch_size, shape.seq_len), generator=g),
            "decoder_input_ids": torch.cat([torch.zeros_like(labels[:, :1]), labels[:, :-1]], dim=1),
            "labels": labels,
        }

    def forward(self, model, batch):
        return model(input_ids=batch["input_ids"], decoder_input_ids=batch["decoder_input_ids"]).logits

    def loss(self, model, batch):
        return model(
            input_ids=batch["input_ids"], decoder_input_ids=batch["decoder_input_ids"], labels=batch["labels"]
        ).loss
