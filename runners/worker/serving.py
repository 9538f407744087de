"""`workload=serve` in the worker: this process holds the model and is the server. It
starts the load generators (runners/loadgen/, serve.generators processes, each on its end
of a socket pair), waits until each has built its schedule (and, with tenants, until every
tenant is ready), gives them one time zero, serves them (runners/worker/server.py), then
reads their per-request records: requests.csv in the run folder, the figures in the result."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from runners.config import BenchConfig
from runners.contracts import Measurement, Result
from runners.loadgen.generator import FIELDS, Spec, read_records
from runners.serving import wire
from runners.serving.slo import Request
from runners.worker import server

READY_TIMEOUT_S = 60.0
START_MARGIN_S = 0.05  # time zero this far ahead: every generator has its START before it


def warm_up(run_batch: Callable[[int], object], max_batch_size: int, steps: int) -> None:
    """Every batch size once (a first call at a new shape is slower), then more of size 1."""
    for size in range(1, max_batch_size + 1):
        run_batch(size)
    for _ in range(max(0, steps - 1)):
        run_batch(1)


def start_generators(config: BenchConfig, run_dir: Path, stream: int) -> list[tuple]:
    serve = config.serve
    started = []
    for index in range(serve.generators):
        mine, theirs = wire.socket_pair()
        spec = Spec(
            rate=serve.rate,
            duration_s=serve.duration_s,
            seed=config.seed,
            burstiness=serve.burstiness,
            stream=stream,
            generators=serve.generators,
            index=index,
            concurrency=None if serve.concurrency is None else -(-serve.concurrency // serve.generators),
            drain_s=serve.drain_s,
            min_requests=serve.min_requests,
        )
        spec_path, out_path = run_dir / f"loadgen-{index}.json", run_dir / f"loadgen-{index}-records.json"
        spec_path.write_text(json.dumps(dataclasses.asdict(spec)))
        process = subprocess.Popen(
            [sys.executable, "-m", "runners.loadgen", str(theirs.fileno()), str(spec_path), str(out_path)],
            pass_fds=[theirs.fileno()],
            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},  # the generator never touches a device
        )
        theirs.close()
        started.append((mine, process, out_path))
    return started


def wait_ready(generators: list[tuple]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    for sock, process, _ in generators:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        packet = sock.recv(64)
        if not packet or wire.REQUEST.unpack(packet)[0] != wire.READY:
            raise RuntimeError(f"load generator {process.pid} did not start (exit code {process.poll()})")
        sock.settimeout(None)


def write_csv(requests: list[Request], path: Path) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(FIELDS)
        for r in sorted(requests, key=lambda r: r.scheduled):
            writer.writerow([getattr(r, f) for f in FIELDS])


def run(job, config: BenchConfig, run_batch: Callable[[int], object], result: Result, wait_for_tenants, log):
    """Serve one run; returns every request's record and the inter-token gaps in ms, each
    batch's once per request in it (the scenario derives the figures)."""
    serve, run_dir = config.serve, Path(job.run_dir)
    log(f"warm-up: batch sizes 1..{serve.max_batch_size}")
    warm_up(run_batch, serve.max_batch_size, config.workload.warmup_steps)
    stream = job.group.index if job.group and job.group.index is not None else 0
    generators = start_generators(config, run_dir, stream)
    try:
        wait_ready(generators)
        wait_for_tenants(job)
        t0 = wire.now() + START_MARGIN_S
        wall0 = time.time() + START_MARGIN_S
        for sock, _, _ in generators:
            sock.send(wire.START.pack(t0))
        load = f"rate {serve.rate:g}/s" if serve.rate else f"closed loop, concurrency {serve.concurrency}"
        log(f"serving {serve.duration_s:g} s at {load}, {serve.generators} generator(s)")
        batches = server.serve(
            [sock for sock, _, _ in generators],
            run_batch,
            serve.max_batch_size,
            serve.max_queue_delay_ms / 1e3,
            serve.max_queue,
            serve.poll_us / 1e6,
        )
        wall1 = time.time()
        for _, process, _ in generators:
            if process.wait(timeout=30) != 0:
                raise RuntimeError(f"load generator {process.pid} exited with code {process.returncode}")
    finally:
        for sock, process, _ in generators:
            sock.close()
            if process.poll() is None:
                process.kill()
    requests = [r for _, _, path in generators for r in read_records(str(path))]
    write_csv(requests, run_dir / "requests.csv")
    busy = sum(batches.seconds)
    result.details["serve_batches"] = {
        "batches": len(batches.sizes),
        "mean_batch_size": sum(batches.sizes) / len(batches.sizes) if batches.sizes else None,
        "busy_share": busy / (wall1 - wall0) if wall1 > wall0 else None,
        "rejected": batches.rejected,
        "errors": batches.errors,
        "failed_batches": batches.failed,
    }
    result.measurement = Measurement(
        warmup_steps=serve.max_batch_size + max(0, config.workload.warmup_steps - 1),
        steps=len(batches.sizes),
        duration_s=wall1 - wall0,
        reached_minimums=True,
        window=[wall0, wall1],
        ci_rel=None,
        step_times_ms=[s * 1e3 for s in batches.seconds],
        sync="step",
        inputs=config.workload.inputs.value,
    )
    itl_ms = [
        (b - a) * 1e3 for size, times in batches.token_times for a, b in zip(times, times[1:]) for _ in range(size)
    ]
    return requests, itl_ms
