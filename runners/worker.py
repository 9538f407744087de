"""The isolated worker: `python -m runners.worker <run-dir>/job.json`.

Runs one workload in this fresh process (started with the backend's environment, so a
virtualization layer is in place before CUDA initializes) and always writes
result.json next to the job, also when the workload fails. Needs only the framework
and the standard library: no Hydra, no MLflow."""
from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

from runners import fingerprint, measure, results, stats
from runners.devices import FLOPS_FACTOR, peak_tflops
from runners.frameworks import frameworks
from runners.nvml import MemorySampler


def log(line: str) -> None:
    print(f"[worker {time.strftime('%H:%M:%S')}] {line}", flush=True)


def _terminated(signum, frame):
    raise SystemExit(f"worker stopped by {signal.Signals(signum).name}")


def data_parallel(result: dict[str, Any], rank_throughput: float) -> float:
    """Gather every rank's throughput; the run's throughput is their sum."""
    import torch.distributed as dist

    per_rank: list[float] = [0.0] * dist.get_world_size()
    dist.all_gather_object(per_rank, rank_throughput)
    result["ddp"] = {"world_size": dist.get_world_size(), "rank": dist.get_rank(), "backend": dist.get_backend(),
                     "per_rank_throughput": per_rank}
    return sum(per_rank)


def end_rank(code: int) -> NoReturn:
    """How a torchrun rank ends, once its result file is written: after the other ranks (a
    barrier, when this one succeeded), and without tearing down its process group. The gloo
    group's destructor runs with the GIL held and joins a thread that may still need the GIL
    to free the last collective's tensors: a rank hung there for good, one run in a few on a
    loaded 2-core machine (pytorch/pytorch#56297; destroy_process_group() goes through the
    same destructor). The operating system frees what the process held."""
    import torch.distributed as dist

    if code == 0 and dist.is_initialized():
        with contextlib.suppress(Exception):  # a peer that already left: nothing is lost, the result is written
            dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def generation_metrics(framework, workload: dict[str, Any], steps: int, throughput: float) -> dict[str, Any]:
    """Time to first token and per output token, over the measured generations only."""
    if workload["kind"] != "generate":
        return {}
    ttft, tpot = framework.ttft_ms[-steps:], framework.tpot_ms[-steps:]
    return {"ttft_ms_p50": stats.percentile(ttft, 50), "ttft_ms_mean": stats.summarize_ms(ttft)["mean"],
            "tpot_ms_p50": stats.percentile(tpot, 50) if tpot else None,
            "tpot_ms_mean": stats.summarize_ms(tpot)["mean"] if tpot else None,
            "output_tokens_per_s": throughput * workload["new_tokens"]}


def mfu_metrics(entry, workload: dict[str, Any], shape, result: dict[str, Any], framework,
                throughput: float) -> dict[str, Any]:
    """Model FLOPs utilization, where the published FLOPs apply: a GPU run of a train
    or infer workload at the entry's default size and input shape."""
    import zoo

    if (workload["kind"] not in FLOPS_FACTOR or entry.size != entry.default_size or shape != zoo.InputShape()
            or not entry.flops_per_sample or framework.device != "cuda"):
        return {}
    achieved = entry.flops_per_sample * FLOPS_FACTOR[workload["kind"]] * throughput / 1e12
    gpu = (framework.describe().get("cuda_device") or {}).get("name", "")
    peak = peak_tflops(gpu, workload["precision"])
    result["mfu_basis"] = {"flops_per_sample": entry.flops_per_sample, "factor": FLOPS_FACTOR[workload["kind"]],
                           "peak_tflops": peak, "device": gpu}
    return {"achieved_tflops": achieved, "mfu": achieved / peak if peak else None}


def wait_for_tenants(tenant: dict[str, Any] | None) -> None:
    """A file barrier: every tenant of a group starts measuring at the same moment."""
    if not tenant or not tenant.get("barrier_dir"):
        return
    barrier = Path(tenant["barrier_dir"])
    (barrier / f"ready-{tenant['index']}").touch()
    deadline = time.monotonic() + tenant["barrier_timeout_s"]
    log(f"tenant {tenant['index']}: waiting for {tenant['of']} tenants")
    while len(list(barrier.glob("ready-*"))) < tenant["of"]:
        if any(barrier.glob("failed-*")):
            raise RuntimeError("another tenant of the group failed before measuring")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the other tenants were not ready within {tenant['barrier_timeout_s']:g} s")
        time.sleep(0.01)


def setup(job: dict[str, Any], state: dict[str, Any]):
    """The zoo entry, the input shape and the configured framework adapter of a job."""
    import zoo  # registers entries; frameworks are imported by the adapters themselves

    config, workload = job["config"], job["config"]["workload"]
    entry = zoo.get(config["model"]["name"])(job["model"]["size"])
    shape = zoo.InputShape(seq_len=workload["seq_len"], image_size=workload["image_size"])
    framework = frameworks.get(entry.framework)(job["backend"]["device"], workload["precision"],
                                                config["backend"]["threads"], workload["tf_mode"])
    framework.new_tokens = workload["new_tokens"]
    framework.compile = workload.get("compile", "none")
    framework.weights = config["model"].get("weights")
    state["framework"] = framework
    return entry, shape, framework


def run_parity(job: dict[str, Any], result: dict[str, Any], state: dict[str, Any]) -> None:
    """Seeded outputs (saved as outputs.npy next to the result) and a short loss curve."""
    import numpy as np

    config, workload = job["config"], job["config"]["workload"]
    entry, shape, framework = setup(job, state)
    log(f"parity: {entry.name} ({entry.size}), {job['parity_steps']} training steps")
    outputs, losses = framework.parity(entry, workload["batch_size"], shape, config["seed"], job["parity_steps"])
    np.save(Path(job["run_dir"]) / "outputs.npy", outputs)
    result["parity"] = {"outputs_file": "outputs.npy", "outputs_shape": list(outputs.shape), "losses": losses}
    result["status"] = "success"


def run_workload(job: dict[str, Any], result: dict[str, Any], state: dict[str, Any]) -> None:
    config, workload = job["config"], job["config"]["workload"]
    if workload["kind"] in ("probe", "microbench"):
        from runners import microbench, probe

        (probe if workload["kind"] == "probe" else microbench).run(job, result, log)
        return
    if job.get("task") == "parity":
        run_parity(job, result, state)
        return
    entry, shape, framework = setup(job, state)
    device = framework.device

    log(f"building {entry.name} ({entry.size}) for {workload['kind']} on {device}")
    step = framework.prepare(entry, workload["kind"], workload["batch_size"], shape, config["seed"])
    result["model"]["params"] = framework.param_count()
    sampler = MemorySampler() if device == "cuda" else contextlib.nullcontext()
    # Ranks must run the same number of steps (each waits for the others' gradients): a
    # fixed count, not a duration each rank would judge on its own.
    distributed = workload["kind"] == "train_ddp"
    with sampler:
        m = measure.run(
            step,
            framework.synchronize,
            warmup_steps=workload["warmup_steps"],
            min_steps=workload["min_steps"],
            min_duration_s=0.0 if distributed else workload["min_duration_s"],
            max_duration_s=float("inf") if distributed else workload["max_duration_s"],
            timer=framework.step_timer(),
            progress=log,
            before_measuring=lambda: wait_for_tenants(job.get("tenant")),
            target_ci=None if distributed else workload.get("target_ci"),
        )

    if config.get("profile"):
        from runners import profiling

        log(f"profiling {config['profile_steps']} more steps")
        run_dir = Path(job["run_dir"])
        if entry.framework == "tensorflow":
            result["profile"] = profiling.profile_tensorflow(step, framework.synchronize, config["profile_steps"], run_dir)
        else:
            result["profile"] = profiling.profile_torch(step, framework.synchronize, config["profile_steps"], device,
                                                        run_dir)

    memory = framework.memory() + (sampler.readings() if device == "cuda" else [])
    memory.append({"source": "rusage.ru_maxrss", "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "scope": "host memory, peak resident set of the worker process"})
    result["memory"] = memory

    latency = stats.summarize_ms(m.step_times_ms)
    device_latency = stats.summarize_ms(m.device_times_ms) if m.device_times_ms else {}
    total_s = sum(m.step_times_ms) / 1e3
    throughput = workload["batch_size"] * len(m.step_times_ms) / total_s
    if distributed:
        throughput = data_parallel(result, throughput)
    tokens = entry.items_per_sample(shape) if workload["kind"] != "generate" else None
    results.set_metrics(result, {
        **generation_metrics(framework, workload, len(m.step_times_ms), throughput),
        **mfu_metrics(entry, workload, shape, result, framework, throughput),
        "throughput": throughput,
        "tokens_per_s": throughput * tokens if tokens else None,
        "latency_ms_p50": latency["p50"],
        "latency_ms_p90": latency["p90"],
        "latency_ms_p99": latency["p99"],
        "latency_ms_mean": latency["mean"],
        "latency_ms_stdev": latency["stdev"],
        "device_ms_p50": device_latency.get("p50"),
        "device_ms_mean": device_latency.get("mean"),
        "memory_peak_mb": memory[0]["peak_mb"],  # the allocator's view on a GPU, process RSS on the CPU
        **(result.get("profile") or {}).get("per_step", {}),
        "time_to_first_step_s": m.first_step_done_at - job["spawned_at"],
        "steps": len(m.step_times_ms),
        "measured_s": m.duration_s,
    })
    result["memory_peak_source"] = memory[0]["source"]
    result["measurement"] = {
        "warmup_steps": m.warmup_steps,
        "steps": len(m.step_times_ms),
        "duration_s": m.duration_s,
        "reached_minimums": m.reached_minimums,
        "window": list(m.window),
        "ci_rel": m.ci_rel if m.ci_rel != float("inf") else None,
        "step_times_ms": m.step_times_ms,
        "device_times_ms": m.device_times_ms,
        "final_loss": framework.final_loss(),
    }
    result["status"] = "success"
    log(f"{throughput:.2f} samples/s, p50 {latency['p50']:.2f} ms over {len(m.step_times_ms)} steps")


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminated)
    job_path = Path(argv[0])
    job = json.loads(job_path.read_text())
    result = results.new(job)
    state: dict[str, Any] = {}
    try:
        run_workload(job, result, state)
    except BaseException as exc:  # noqa: BLE001  (every failure becomes a recorded result)
        tail = "".join(traceback.format_exception(exc)[-30:])
        results.fail(result, type(exc).__name__, str(exc) or repr(exc), tail)
        log(f"FAILED: {type(exc).__name__}: {exc}")
        print(tail, file=sys.stderr, flush=True)
    finally:
        framework = state.get("framework")
        extra: dict[str, Any] = {"suite": job["suite"]}  # the backend is recorded at the top level
        with contextlib.suppress(Exception):
            extra["framework"] = framework.describe() if framework else {}
            gpu = extra["framework"].get("cuda_device")
            result["device"]["name"] = gpu["name"] if gpu else fingerprint.cpu_model()
        with contextlib.suppress(Exception):
            from runners.nvml import visible_gpus

            if job["backend"]["device"] == "cuda":
                extra["gpus"] = visible_gpus()[0]
        result["environment"] = fingerprint.collect(extra)
        result["finished_at"] = time.time()
        rank = int(os.environ.get("RANK", "0"))  # torchrun: rank 0 writes the run's result
        results.write(job_path.parent / (results.RESULT_FILE if rank == 0 else f"result-rank{rank}.json"), result)
    code = 0 if result["status"] == "success" else 1
    if job["config"]["workload"]["kind"] == "train_ddp":
        end_rank(code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
