"""PyTorch: device placement, autocast precision, train/infer steps, CUDA timing."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Optional

from runners.worker.frameworks import Framework, frameworks

_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


class CudaEventTimer:
    """A pair of CUDA events per step; read once after the loop, so no extra syncs."""

    def __init__(self, torch):
        self.torch, self.pairs, self._start = torch, [], None

    def start(self) -> None:
        self._start = self.torch.cuda.Event(enable_timing=True)
        self._start.record()

    def stop(self) -> None:
        end = self.torch.cuda.Event(enable_timing=True)
        end.record()
        self.pairs.append((self._start, end))

    def times_ms(self) -> list[float]:
        self.torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in self.pairs]


def _move(batch: Any, device) -> Any:
    if isinstance(batch, dict):
        return {k: _move(v, device) for k, v in batch.items()}
    return batch.to(device, non_blocking=True) if hasattr(batch, "to") else batch


@frameworks.register
class TorchFramework(Framework):
    name = "pytorch"

    def __init__(self, device, precision, threads, mode="graph", compile="none", weights=None):
        super().__init__(device, precision, threads, mode, compile, weights)
        import torch

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.model = None
        self._loss = None
        self.ttft_ms: list[float] = []  # generate: prefill to the first token, per generation
        self.tpot_ms: list[float] = []  # generate: mean time per later token, per generation

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return self.torch.autocast(device_type=self.device, dtype=getattr(self.torch, _DTYPES[self.precision]))

    def _model_and_batch(self, entry, batch_size, shape, seed):
        self.torch.manual_seed(seed)  # weights are random: the seed makes them the same everywhere
        model = self.load_weights(entry, entry.build(shape)).to(self.device)
        return model, _move(entry.make_batch(batch_size, shape, seed), self.device)

    def _optimizer(self, model):
        return self.torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def _compiled(self, model):
        if self.compile == "none":
            return model
        # The model object (its parameters, param_count) stays the eager one; calls go
        # through the compiled wrapper, which shares its parameters.
        return self.torch.compile(model, backend="cudagraphs" if self.compile == "cudagraphs" else "inductor")

    def infer_step(self, entry, batch_size, shape, seed):
        torch = self.torch
        self.model, batch = self._model_and_batch(entry, batch_size, shape, seed)
        model = self._compiled(self.model)
        model.eval()

        def infer_step():
            with torch.inference_mode(), self.autocast():
                return entry.forward(model, batch)

        return infer_step

    def train_step(self, entry, batch_size, shape, seed, distributed=False):
        torch = self.torch
        self.model, batch = self._model_and_batch(entry, batch_size, shape, seed)
        model = self._compiled(self._distributed(self.model) if distributed else self.model)
        model.train()
        optimizer = self._optimizer(model)
        scaler = torch.amp.GradScaler(self.device, enabled=self.precision == "fp16" and self.device == "cuda")

        def train_step():
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                loss = entry.loss(model, batch)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            self._loss = loss
            return loss

        return train_step

    def generate_step(self, entry, batch_size, shape, seed, new_tokens):
        self.model, batch = self._model_and_batch(entry, batch_size, shape, seed)
        return self._generate_step(self.model, batch["input_ids"], new_tokens)

    def parity(self, entry, batch_size, shape, seed, steps):
        torch = self.torch
        model, batch = self._model_and_batch(entry, batch_size, shape, seed)
        model.eval()
        with torch.inference_mode(), self.autocast():
            outputs = entry.forward(model, batch).float().cpu().numpy()
        model.train()
        torch.manual_seed(seed)  # dropout masks too
        optimizer = self._optimizer(model)
        losses = []
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                loss = entry.loss(model, batch)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach().float()))
        return outputs, losses

    def _distributed(self, model):
        """Join the torchrun group (NCCL between GPUs, gloo on the CPU) and wrap the model."""
        import os

        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        if self.device == "cuda":
            local = int(os.environ.get("LOCAL_RANK", 0))
            self.torch.cuda.set_device(local)
            model = model.to(f"cuda:{local}")
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device == "cuda" else "gloo")
        # Held until the rank exits, which skips its destructor (worker.end_rank): freeing the
        # wrapper frees its process group, and that can deadlock.
        self.distributed_model = DistributedDataParallel(
            model, device_ids=[self.torch.cuda.current_device()] if self.device == "cuda" else None
        )
        return self.distributed_model

    def _generate_step(self, model, prompt, new_tokens):
        """Greedy decoding with the KV cache: a prefill, then one token per forward."""
        torch = self.torch
        model.eval()

        def generate_step():
            with torch.inference_mode(), self.autocast():
                began = time.perf_counter()
                out = model(input_ids=prompt, use_cache=True)
                token = out.logits[:, -1:].argmax(-1)
                self.synchronize()
                first = time.perf_counter()
                past = out.past_key_values
                for _ in range(new_tokens - 1):
                    out = model(input_ids=token, past_key_values=past, use_cache=True)
                    past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
                self.synchronize()
                self.ttft_ms.append((first - began) * 1e3)
                if new_tokens > 1:
                    self.tpot_ms.append((time.perf_counter() - first) * 1e3 / (new_tokens - 1))

        return generate_step

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def step_timer(self):
        return CudaEventTimer(self.torch) if self.device == "cuda" else None

    def final_loss(self) -> Optional[float]:
        return float(self._loss.detach().float()) if self._loss is not None else None

    def param_count(self) -> Optional[int]:
        return sum(p.numel() for p in self.model.parameters()) if self.model is not None else None

    def memory(self):
        if self.device != "cuda":
            return []
        cuda = self.torch.cuda
        return [
            {
                "source": "torch.cuda.max_memory_allocated",
                "peak_mb": cuda.max_memory_allocated() / 2**20,
                "scope": "tensors held by the PyTorch caching allocator",
            },
            {
                "source": "torch.cuda.max_memory_reserved",
                "peak_mb": cuda.max_memory_reserved() / 2**20,
                "scope": "memory the caching allocator reserved from the device",
            },
        ]

    def describe(self):
        torch = self.torch
        info: dict[str, Any] = {
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "threads": torch.get_num_threads(),
        }
        if self.device == "cuda":
            props = torch.cuda.get_device_properties(0)
            info["cuda_device"] = {
                "name": props.name,
                "capability": f"{props.major}.{props.minor}",
                "memory_total_mb": props.total_memory / 2**20,
                "uuid": str(getattr(props, "uuid", "")) or None,
            }
        return info
