"""The hand-written loop `make bench-overhead` holds the suite against: what a user would
write to time inference, in a process of its own. The model comes from the zoo with the
suite's seed (the same weights), the batch is the suite's seeded batch kept in host memory
and copied to the device each step, the outputs are copied back and the device is
synchronized after every step; each step is timed on the host clock. Nothing else runs:
no threads, no events, no NVML, no bookkeeping inside the timed loop.

`python -m runners.worker.bare_loop '<json arguments>' <out.json>`; the arguments are
those of `Loop` below. Imports torch: the parent only starts it."""

from __future__ import annotations

import contextlib
import functools
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

_DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


@dataclass
class Loop:
    model: str
    size: str
    precision: str  # fp32, or bf16/fp16 under autocast (as the suite's workload.precision)
    batch_size: int
    seq_len: int
    image_size: int
    device: str  # cpu, cuda, or meta (tests: placement without a GPU)
    seed: int
    warmup_steps: int
    min_steps: int
    min_duration_s: float
    max_duration_s: float
    # After the loop's own measurement: the same loop with, in turn, each thing the suite's
    # worker used to do inside its measured window (ABLATIONS), alternated with the plain loop
    # in this process, to show on a GPU what each one costs. Not part of the comparison.
    ablation_rounds: int = 0


def build(loop: Loop) -> tuple[Any, Any, dict, Any]:
    """The entry, the model on the device, the batch in host memory and the torch device."""
    import torch

    import zoo

    device = torch.device(loop.device)
    if device.type == "cuda":
        torch.cuda.set_device(device.index or 0)
        device = torch.device("cuda", device.index or 0)
    entry = zoo.get(loop.model)(loop.size)
    shape = zoo.InputShape(seq_len=loop.seq_len, image_size=loop.image_size)
    torch.manual_seed(loop.seed)  # as the suite's worker: the same random weights
    model = entry.build(shape).to(device).eval()
    host_batch = entry.make_batch(loop.batch_size, shape, loop.seed)
    return entry, model, host_batch, device


def placement(model, batch: dict) -> dict[str, list[str]]:
    """Where the model's parameters and buffers and the step's inputs are: one device each,
    or the step would fail (or silently copy) mid-forward."""
    return {
        "model": sorted({str(t.device) for t in [*model.parameters(), *model.buffers()]}),
        "inputs": sorted({str(v.device) for v in batch.values() if hasattr(v, "device")}),
    }


ABLATIONS = {
    "nvml_thread": "a thread reading NVML memory every 50 ms during the steps (the worker's old MemorySampler)",
    "events_per_step": "two new CUDA events per step, recorded around it (the worker's old CudaEventTimer)",
}


def timed(step, sync, loop: Loop, before=None, after=None) -> list[float]:
    """Steps until the minimums are met, each timed on the host clock to its synchronize;
    `before` runs ahead of each step's clock, `after` between the step and its synchronize."""
    times: list[float] = []
    perf_counter = time.perf_counter
    began = perf_counter()
    while True:
        if before:
            before()
        t0 = perf_counter()
        step()
        if after:
            after()
        sync()
        t1 = perf_counter()
        times.append((t1 - t0) * 1e3)
        if (len(times) >= loop.min_steps and t1 - began >= loop.min_duration_s) or t1 - began >= loop.max_duration_s:
            return times


def _nvml_poller(index: int = 0):
    """The old sampler's polling, started now; returns its stop function."""
    import os
    import threading

    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    stop = threading.Event()

    def poll():
        while not stop.wait(0.05):
            pynvml.nvmlDeviceGetMemoryInfo(handle)
            [p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid == os.getpid()]

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()

    def end():
        stop.set()
        thread.join()

    return end


def _sm_clock(device) -> Optional[int]:
    """The GPU's SM clock now (NVML), outside any timed step; None without one."""
    if device.type != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(
            pynvml.nvmlDeviceGetClockInfo(pynvml.nvmlDeviceGetHandleByIndex(device.index or 0), pynvml.NVML_CLOCK_SM)
        )
    except Exception:  # no nvidia-ml-py, or NVML not readable here
        return None


def _record_new_event(torch, events: list) -> None:
    events.append(torch.cuda.Event(enable_timing=True))
    events[-1].record()


def ablations(step, sync, loop: Loop, device) -> dict[str, Any]:
    """Per extra: the plain loop's and the loop-with-it's median step times, alternated."""
    import torch

    out: dict[str, Any] = {}
    for name in ABLATIONS:
        if device.type != "cuda":
            out[name] = {"skipped": f"needs a CUDA device, the loop ran on {device}"}
            continue
        plain, extra = [], []
        for round_ in range(loop.ablation_rounds):
            for variant in ("plain", name) if round_ % 2 == 0 else (name, "plain"):
                if variant == "plain":
                    plain.append(statistics.median(timed(step, sync, loop)))
                elif name == "nvml_thread":
                    try:
                        end = _nvml_poller(device.index or 0)
                    except Exception as exc:  # no nvidia-ml-py, or NVML not readable
                        out[name] = {"skipped": f"NVML not readable: {exc}"}
                        break
                    try:
                        extra.append(statistics.median(timed(step, sync, loop)))
                    finally:
                        end()
                else:
                    record = functools.partial(
                        _record_new_event, torch, []
                    )  # the events stay alive, as the old timer's
                    extra.append(statistics.median(timed(step, sync, loop, before=record, after=record)))
            if name in out:
                break
        out.setdefault(name, {"plain_ms": plain, "with_ms": extra, "what": ABLATIONS[name]})
    return out


def run(loop: Loop) -> dict[str, Any]:
    import torch

    entry, model, host_batch, device = build(loop)
    dtype = _DTYPES[loop.precision]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    back = device.type != "meta"  # a meta tensor has no data to copy back

    def autocast():  # as the suite: fp32 runs without an autocast context
        return torch.autocast(device.type, dtype=getattr(torch, dtype)) if dtype else contextlib.nullcontext()

    def step():
        with torch.inference_mode(), autocast():
            # copy=True: on the CPU too the batch and the outputs are copied, as the suite's worker does
            out = entry.forward(model, {k: v.to(device, copy=True) for k, v in host_batch.items()})
            return out.to("cpu", copy=True) if back else out

    placed = placement(model, {k: v.to(device) for k, v in host_batch.items()})
    if placed["model"] != [str(device)] or placed["inputs"] != [str(device)]:
        raise RuntimeError(f"the loop's model is on {placed['model']} and its inputs on {placed['inputs']}")

    for _ in range(loop.warmup_steps):
        step()
        sync()
    clocks = [_sm_clock(device)]
    times = timed(step, sync, loop)
    clocks.append(_sm_clock(device))  # as the worker: before and right after the measured steps
    extra = ablations(step, sync, loop, device) if loop.ablation_rounds else {}
    return {
        "loop": asdict(loop),
        "step_times_ms": times,
        "placement": placed,
        "params": sum(p.numel() for p in model.parameters()),
        "to_device_bytes_per_step": sum(v.nbytes for v in host_batch.values()),
        "torch": torch.__version__,
        "ablations": extra,
        "sm_clock_mhz": clocks if None not in clocks else None,
    }


def main(argv: list[str]) -> int:
    loop = Loop(**json.loads(argv[0]))
    Path(argv[1]).write_text(json.dumps(run(loop)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
