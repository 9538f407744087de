"""PyTorch: device placement, autocast precision, train/infer steps, CUDA timing."""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from typing import Any, Optional

from runners.contracts import Check
from runners.worker.frameworks import Framework, frameworks
from runners.worker.frameworks.torch_feed import TorchFeed, move

_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


class CudaEventTimer:
    """Two CUDA events, made once before the measured steps and recorded around each timed
    unit; each unit's time is read after the synchronize that ends it, which already waited
    for both. Inside the window: two event records per unit, no event created, no extra
    sync, nothing allocated (as a hand-written loop, plus the two records)."""

    def __init__(self, torch):
        self.torch, self.times = torch, []
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self._start.record()  # the CUDA events are created at their first record: now, not in a step
        self._end.record()

    def start(self) -> None:
        self._start.record()

    def stop(self) -> None:
        self._end.record()

    def lap(self) -> None:
        self.times.append(self._start.elapsed_time(self._end))

    def times_ms(self) -> list[float]:
        return self.times


_REPLAYS = [0]  # CUDA graph replays in this process (CompileWatch counts them)


def _count_cuda_graph_replays(torch) -> None:
    """torch keeps no count of CUDA graph replays: count the calls of the public
    torch.cuda.CUDAGraph.replay, which cudagraph trees (the `cudagraphs` backend's) call
    for each graph they run. Once per process."""
    graph = torch.cuda.CUDAGraph
    if getattr(graph.replay, "counted", False):
        return
    replay = graph.replay

    def counted(self, *args, **kwargs):
        _REPLAYS[0] += 1
        return replay(self, *args, **kwargs)

    counted.counted = True
    graph.replay = counted


class _SkipMessages(logging.Handler):
    """The reasons torch gives when it skips CUDA graphs (it logs them, and runs eager)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage().splitlines()[0][:300])


class CompileWatch:
    """What torch.compile really did, from torch's own counters (torch._dynamo.utils.counters:
    frames compiled and failed, unique graphs, graph breaks; inductor's cudagraph_skips) and the
    CUDA graph replays, read before each call of the compiled model. A call after the warmup
    steps is a measured one; a requested mode that did not run them is a fallback."""

    def __init__(self, torch, mode: str, warmup_calls: int):
        from torch._dynamo.utils import counters

        self.mode, self.counters, self.warmup_calls = mode, counters, warmup_calls
        self.base = self._totals()  # counters are per process: only what happened since counts
        self.before_calls: list[tuple[int, int]] = []  # at each call: (frames compiled so far, replays so far)
        self.skips = _SkipMessages()
        if mode == "cudagraphs":
            _count_cuda_graph_replays(torch)
            logging.getLogger("torch._inductor.cudagraph_utils.__cudagraphs").addHandler(self.skips)

    def watch(self, compiled) -> None:
        compiled.register_forward_pre_hook(lambda module, args: self.before_calls.append(self._now()))

    def _now(self) -> tuple[int, int]:
        return self.counters["frames"]["total"], _REPLAYS[0]

    def _totals(self) -> dict[str, Any]:
        c = self.counters
        return {
            "frames": c["frames"]["total"],
            "frames_ok": c["frames"]["ok"],
            "graphs": c["stats"]["unique_graphs"],
            "ops": c["stats"]["calls_captured"],
            "cudagraph_skips": c["inductor"]["cudagraph_skips"],
            "graph_break": collections.Counter(c["graph_break"]),
        }

    def since(self) -> dict[str, Any]:
        """The counters' growth since this watch began."""
        now = self._totals()
        return {k: now[k] - self.base[k] for k in now}

    def record(self) -> dict[str, Any]:
        """details["compile"]: the counts, and why the mode fell back (None when it ran)."""
        grown = self.since()
        marks = [*self.before_calls, self._now()]
        calls = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])]  # (frames compiled, replays)
        measured = calls[self.warmup_calls :]
        breaks = grown["graph_break"]
        record = {
            "mode": self.mode,
            "calls": len(calls),
            "measured_calls": len(measured),
            "graphs": grown["graphs"],
            "ops_captured": grown["ops"],
            "graph_breaks": sum(breaks.values()),
            "graph_break_reasons": sorted({reason.splitlines()[0][:200] for reason in breaks})[:10],
            # a call after the first that compiled again: a guard failed (new shapes, new inputs)
            "recompiles": sum(1 for frames, _ in calls[1:] if frames),
            "cudagraph_replays": sum(replays for _, replays in measured) if self.mode == "cudagraphs" else None,
            "fallback": None,
        }
        record["fallback"] = self._fallback(record, grown, measured)
        return record

    def _fallback(
        self, record: dict[str, Any], grown: dict[str, Any], measured: list[tuple[int, int]]
    ) -> Optional[str]:
        failed = grown["frames"] - grown["frames_ok"]
        if not record["calls"]:
            return "the compiled model was never called: the steps ran the eager model"
        if failed:
            return f"dynamo could not compile {failed} of {grown['frames']} frames: they ran eager"
        if not record["graphs"]:
            return "dynamo compiled no graph: the model ran eager"
        if any("recompile limit" in reason.lower() for reason in grown["graph_break"]):
            return "dynamo hit its recompile limit: later calls ran eager"
        if self.mode != "cudagraphs":
            return None
        if grown["cudagraph_skips"]:
            why = "; ".join(dict.fromkeys(self.skips.messages)) or "no reason logged"
            return f"CUDA graphs skipped {grown['cudagraph_skips']} time(s), ran eager: {why}"
        # a measured call that compiled may warm a new graph up eagerly; any other must replay
        eager = sum(1 for frames, replays in measured if not frames and not replays)
        if eager or not measured:
            return f"{eager} of {len(measured)} measured calls replayed no CUDA graph"
        return None


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
        self.compile_watch: Optional[CompileWatch] = None
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

    def _model_and_feed(self, entry, workload, shape, seed):
        self.torch.manual_seed(seed)  # weights are random: the seed makes them the same everywhere
        model = self.load_weights(entry, entry.build(shape))
        self.mark("build")
        model = model.to(self.torch_device)
        feed = TorchFeed(self, entry, workload, shape, seed)
        self.synchronize()
        self.mark("to_device")
        return model, feed

    def _optimizer(self, model):
        return self.torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def _compiled(self, model, warmup_steps: int):
        if self.compile == "none":
            return model
        # The model object (its parameters, param_count) stays the eager one; calls go
        # through the compiled wrapper, which shares its parameters.
        compiled = self.torch.compile(model, backend="cudagraphs" if self.compile == "cudagraphs" else "inductor")
        self.compile_watch = CompileWatch(self.torch, self.compile, warmup_steps)
        self.compile_watch.watch(compiled)
        return compiled

    def compile_record(self) -> Optional[dict[str, Any]]:
        """details["compile"] of a compiled run; None when compile=none."""
        if self.compile == "none":
            return None
        if self.compile_watch is None:  # a step that never builds a compiled model (generate, decode)
            return {"mode": self.compile, "fallback": "this workload's step does not use the compiled model"}
        return self.compile_watch.record()

    def runtime_checks(self) -> list[Check]:
        """compiled_mode_ran: the requested torch.compile mode ran the measured steps, no fallback."""
        record = self.compile_record()
        if record is None:
            return []
        if record["fallback"]:
            return [Check("compiled_mode_ran", False, f"compile={self.compile} fell back: {record['fallback']}")]
        replays = "" if record["cudagraph_replays"] is None else f", {record['cudagraph_replays']} CUDA graph replays"
        return [
            Check(
                "compiled_mode_ran",
                True,
                f"compile={self.compile}: {record['graphs']} graph(s), {record['graph_breaks']} graph break(s), "
                f"{record['recompiles']} recompile(s){replays} over {record['measured_calls']} measured calls",
            )
        ]

    def infer_step(self, entry, workload, shape, seed):
        torch = self.torch
        self.model, feed = self._model_and_feed(entry, workload, shape, seed)
        model = self._compiled(self.model, workload.warmup_steps)
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
        model = self._compiled(self.model, workload.warmup_steps)
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
        model = self._compiled(self._distributed(self.model) if distributed else self.model, workload.warmup_steps)
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
        torch.manual_seed(seed)
        model = self.load_weights(entry, entry.build(shape)).to(self.torch_device)
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
