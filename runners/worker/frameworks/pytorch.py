"""PyTorch: device placement, autocast precision, train/infer steps, CUDA timing."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Optional

from runners.worker.frameworks import Framework, frameworks
from runners.worker.frameworks.torch_feed import TorchFeed, move

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


@frameworks.register
class TorchFramework(Framework):
    name = "pytorch"

    def __init__(self, device, precision, threads, mode="graph", compile="none", weights=None):
        super().__init__(device, precision, threads, mode, compile, weights)
        import torch

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.torch_device = torch.device("cpu")
        self.model = None
        self._loss = None
        self.ttft_ms: list[float] = []  # generate: prefill to the first token, per generation
        self.tpot_ms: list[float] = []  # generate: mean time per later token, per generation

    def init_device(self) -> None:
        if self.device != "cuda":
            return
        import os

        torch = self.torch
        index = 0
        if "LOCAL_RANK" in os.environ:
            # A data-parallel rank takes its own device. Where each process has a device of its
            # own (one vGPU per rank) every rank sees one device, its index 0; planning refused
            # runs with more ranks than shared devices.
            index = int(os.environ["LOCAL_RANK"]) % max(torch.cuda.device_count(), 1)
        torch.cuda.set_device(index)
        self.torch_device = torch.device("cuda", index)
        torch.zeros(1, device=self.torch_device)  # creates the context
        torch.cuda.synchronize()

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return self.torch.autocast(device_type=self.device, dtype=getattr(self.torch, _DTYPES[self.precision]))

    def _build(self, entry, shape, seed):
        """The model with its seeded random weights (from the weight cache where it has them:
        bit-identical, runners/worker/weight_cache.py), or the local pretrained ones."""
        from runners.worker import weight_cache

        if self.weights:
            self.torch.manual_seed(seed)
            model, source = self.load_weights(entry, entry.build(shape)), {"weights": "pretrained"}
        else:
            model, source = weight_cache.build(entry, shape, seed, self.weights_cache_dir)
        if self.startup:
            self.startup.details.update(source)
        return model

    def _model_and_feed(self, entry, workload, shape, seed):
        model = self._build(entry, shape, seed)  # weights are random: the seed makes them the same everywhere
        self.mark("build")
        model = model.to(self.torch_device)
        feed = TorchFeed(self, entry, workload, shape, seed)
        self.synchronize()
        self.mark("to_device")
        return model, feed

    def _optimizer(self, model):
        return self.torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def _compiled(self, model):
        if self.compile == "none":
            return model
        # The model object (its parameters, param_count) stays the eager one; calls go
        # through the compiled wrapper, which shares its parameters.
        return self.torch.compile(model, backend="cudagraphs" if self.compile == "cudagraphs" else "inductor")

    def infer_step(self, entry, workload, shape, seed):
        torch = self.torch
        self.model, feed = self._model_and_feed(entry, workload, shape, seed)
        model = self._compiled(self.model)
        model.eval()

        def infer_step():
            batch = feed.next()
            with torch.inference_mode(), self.autocast():
                return feed.back(entry.forward(model, batch))

        return infer_step

    def _feeds_by_batch_size(self, entry, workload, shape, seed, max_batch_size) -> dict:
        """Builds self.model; a feed of host batches for every batch size a server may run."""
        import dataclasses

        self.model, one = self._model_and_feed(entry, dataclasses.replace(workload, batch_size=1), shape, seed)
        feeds = {1: one}
        for n in range(2, max_batch_size + 1):
            feeds[n] = TorchFeed(self, entry, dataclasses.replace(workload, batch_size=n), shape, seed)
        return feeds

    def batch_step(self, entry, workload, shape, seed, max_batch_size):
        """One model; a feed per batch size, each copying its host batch in and the outputs out."""
        torch = self.torch
        feeds = self._feeds_by_batch_size(entry, workload, shape, seed, max_batch_size)
        model = self._compiled(self.model)
        model.eval()

        def batch_step(n):
            feed = feeds[n]
            with torch.inference_mode(), self.autocast():
                feed.back(entry.forward(model, feed.next()))
            self.synchronize()

        return batch_step

    def decode_batch_step(self, entry, workload, shape, seed, max_batch_size, new_tokens):
        """Serving decoders, static batching: n prompts prefilled together, then new_tokens greedy
        steps; each token leaves the device as it is made (streamed). Returns the token times."""
        torch, now = self.torch, time.monotonic  # CLOCK_MONOTONIC, as the load generator's
        feeds = self._feeds_by_batch_size(entry, workload, shape, seed, max_batch_size)
        model = self.model.eval()

        def decode_batch_step(n):
            feed, times = feeds[n], []
            with torch.inference_mode(), self.autocast():
                token = feed.next()["input_ids"]  # the prompt, then each token made
                out = None
                for _ in range(new_tokens):
                    past = out.past_key_values if out is not None else None
                    out = model(input_ids=token, past_key_values=past, use_cache=True)
                    token = out.logits[:, -1:].argmax(-1)
                    feed.back(token)
                    self.synchronize()
                    times.append(now())
            return times

        return decode_batch_step

    def train_step(self, entry, workload, shape, seed, distributed=False):
        torch = self.torch
        self.model, feed = self._model_and_feed(entry, workload, shape, seed)
        model = self._compiled(self._distributed(self.model) if distributed else self.model)
        model.train()
        optimizer = self._optimizer(model)
        scaler = torch.amp.GradScaler(self.device, enabled=self.precision == "fp16" and self.device == "cuda")

        def train_step():
            batch = feed.next()
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                loss = entry.loss(model, batch)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            self._loss = loss
            return loss

        return train_step

    def generate_step(self, entry, workload, shape, seed, new_tokens):
        """Greedy decoding with the KV cache: a prefill, then one token per forward."""
        torch = self.torch
        self.model, feed = self._model_and_feed(entry, workload, shape, seed)
        model = self.model.eval()

        def generate_step():
            with torch.inference_mode(), self.autocast():
                began = time.perf_counter()
                out = model(input_ids=feed.next()["input_ids"], use_cache=True)
                token = out.logits[:, -1:].argmax(-1)
                self.synchronize()
                first = time.perf_counter()
                past, tokens = out.past_key_values, [token]
                for _ in range(new_tokens - 1):
                    out = model(input_ids=token, past_key_values=past, use_cache=True)
                    past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
                    tokens.append(token)
                feed.back(torch.cat(tokens, dim=1))
                self.synchronize()
                self.ttft_ms.append((first - began) * 1e3)
                if new_tokens > 1:
                    self.tpot_ms.append((time.perf_counter() - first) * 1e3 / (new_tokens - 1))

        return generate_step

    def parity(self, entry, batch_size, shape, seed, steps):
        torch = self.torch
        model = self._build(entry, shape, seed).to(self.torch_device)
        batch = move(entry.make_batch(batch_size, shape, seed), self.torch_device)
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
        """Join the torchrun group (NCCL between GPUs, gloo on the CPU) and wrap the model,
        which init_device already placed on this rank's own device."""
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device == "cuda" else "gloo")
        # Held until the rank exits, which skips its destructor (worker.end_rank): freeing the
        # wrapper frees its process group, and that can deadlock.
        self.distributed_model = DistributedDataParallel(
            model, device_ids=[self.torch_device.index] if self.device == "cuda" else None
        )
        return self.distributed_model

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def step_timer(self):
        return CudaEventTimer(self.torch) if self.device == "cuda" else None

    def tf32_enabled(self, entry) -> bool:
        backends = self.torch.backends
        if entry.convolutional:
            return bool(backends.cudnn.allow_tf32)  # True by default
        return bool(backends.cuda.matmul.allow_tf32) or self.torch.get_float32_matmul_precision() != "highest"

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
            "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        }
        if self.device == "cuda":
            props = torch.cuda.get_device_properties(self.torch_device)
            info["cuda_device"] = {
                "name": props.name,
                "capability": f"{props.major}.{props.minor}",
                "memory_total_mb": props.total_memory / 2**20,
                "uuid": str(getattr(props, "uuid", "")) or None,
            }
        return info
