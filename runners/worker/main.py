"""The isolated worker: `python -m runners.worker <run-dir>/job.json`.

Runs one job in this fresh process (started with the backend's environment, so a
virtualization layer is in place before CUDA initializes) and always writes
result.json next to the job, once, also when the work fails. Needs only the framework
and the standard library: no Hydra, no MLflow.

Longer than the project's ~300 lines because it is the one place where every step of a
run's life in the worker can fail and must still end in that one result file: the job,
the framework's start-up phases, the scenario, profiling, evidence and the error record
read top to bottom here; split, the failure paths would be spread over modules."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

from runners import names, nvml, stats
from runners.config import BenchConfig, Sync
from runners.contracts import INVALID, RESULT_FILE, STOP_FILE, SUCCESS, Job, Measurement, MemoryReading, Result
from runners.scenarios import Scenario, scenarios
from runners.worker import evidence, fingerprint, job_config, measure, startup, weight_cache
from runners.worker.frameworks import Framework, frameworks
from runners.worker.gpu_peaks import peak_tflops


def log(line: str) -> None:
    print(f"[worker {time.strftime('%H:%M:%S')}] {line}", flush=True)


class Stopped(BaseException):
    """The parent stopped this worker; why is in the run folder's stop file when it said."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


def _stopper(run_dir: Path):
    def terminated(signum, frame):
        try:
            reason = json.loads((run_dir / STOP_FILE).read_text())
            raise Stopped(reason["type"], reason["message"])
        except (OSError, ValueError, KeyError):
            raise Stopped("Stopped", f"worker stopped by {signal.Signals(signum).name}") from None

    return terminated


# A run's step, and what it holds (a tf.data pipeline, a DataLoader's workers), lives until the
# process ends, which tears nothing down (leave): dropping a training step's tf.data iterator
# joined its autotuning thread for up to 9 s after the measured steps, before the result was
# written (results/reference/cpu/sweep-keras-tiny.txt).
_held: list[Any] = []


def leave(code: int) -> NoReturn:
    """How every worker ends, once its result file is written: the exit handlers run (as at an
    interpreter's exit: multiprocessing ends its children), nothing else is torn down, and the
    operating system frees what the process held."""
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def end_rank(code: int) -> NoReturn:
    """How a torchrun rank ends: after the other ranks (a barrier, when this one succeeded), and
    without tearing down its process group. The gloo group's destructor runs with the GIL held
    and joins a thread that may still need the GIL to free the last collective's tensors: a rank
    hung there for good, one run in a few on a loaded 2-core machine (pytorch/pytorch#56297;
    destroy_process_group() goes through the same destructor)."""
    import torch.distributed as dist

    if code == 0 and dist.is_initialized():
        with contextlib.suppress(Exception):  # a peer that already left: nothing is lost, the result is written
            dist.barrier()
    leave(code)


def wait_for_tenants(job: Job) -> None:
    """A file barrier: every tenant of a group starts measuring at the same moment."""
    if not job.barrier:
        return
    barrier, index, count = Path(job.barrier.dir), job.group.index, job.group.of
    (barrier / f"ready-{index}").touch()
    deadline = time.monotonic() + job.barrier.timeout_s
    log(f"tenant {index}: waiting for {count} tenants")
    while len(list(barrier.glob("ready-*"))) < count:
        if any(barrier.glob("failed-*")):
            raise RuntimeError("another tenant of the group failed before measuring")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the other tenants were not ready within {job.barrier.timeout_s:g} s")
        time.sleep(0.01)


def setup(job: Job, config: BenchConfig, state: dict[str, Any]):
    """The zoo entry, the input shape and the configured framework adapter of a job."""
    import zoo  # registers entries; frameworks are imported by the adapters themselves

    workload = config.workload
    entry = zoo.get(config.model.name)(job.model.size)
    shape = zoo.InputShape(seq_len=workload.seq_len, image_size=workload.image_size)
    runtime = config.runtime.name  # resolved by planning (runners/parent/runtimes.py)
    framework = frameworks.get(entry.framework if runtime == "auto" else runtime)(
        job.backend["device"],
        workload.precision.value,
        config.backend.threads,
        workload.tf_mode.value,
        workload.compile.value,
        config.model.weights,
    )
    framework.runtime, framework.exports_dir = config.runtime, Path(config.results_dir).resolve() / "exports"
    framework.weights_cache_dir = weight_cache.folder(config.results_dir)
    state["framework"] = framework
    framework.startup = startup.Startup(job.spawned_at)
    framework.mark("import")
    framework.init_device()
    framework.mark("device_init")
    return entry, shape, framework


def run_parity(job: Job, result: Result, state: dict[str, Any]) -> None:
    """Seeded outputs (saved as outputs.npy next to the result) and a short loss curve."""
    import numpy as np

    config = job_config.bench_config(job)
    entry, shape, framework = setup(job, config, state)
    log(f"parity: {entry.name} ({entry.size}), {job.parity_steps} training steps")
    outputs, losses = framework.parity(entry, config.workload.batch_size, shape, config.seed, job.parity_steps)
    np.save(Path(job.run_dir) / "outputs.npy", outputs)
    result.details["parity"] = {"outputs_file": "outputs.npy", "outputs_shape": list(outputs.shape), "losses": losses}
    result.status = SUCCESS


def mfu(result: Result, scenario: Scenario, entry, shape, framework: Framework) -> None:
    """Model FLOPs utilization, where the published FLOPs apply: a GPU run at the entry's
    default size and input shape, of a kind that has a FLOPs factor, on a GPU whose peak is
    known (runners/worker/gpu_peaks.py): an unknown GPU gets no MFU rather than a wrong one."""
    import zoo

    if (
        scenario.flops_factor is None
        or entry.size != entry.default_size
        or shape != zoo.InputShape()
        or not entry.flops_per_sample
        or framework.device != "cuda"
    ):
        return
    achieved = entry.flops_per_sample * scenario.flops_factor * result.value("throughput") / 1e12
    gpu = (framework.describe().get("cuda_device") or {}).get("name", "")
    peak = peak_tflops(gpu, framework.precision, framework.tf32_enabled(entry))
    result.details["mfu_basis"] = {
        "flops_per_sample": entry.flops_per_sample,
        "factor": scenario.flops_factor,
        "device": gpu,
        "peak_tflops": peak.tflops if peak else None,
        "peak": peak.basis if peak else f"none: no datasheet peak for {gpu!r} at {framework.precision}",
        "mig_fraction": peak.fraction if peak else None,
    }
    result.set(names.ACHIEVED_TFLOPS, achieved)
    if peak:
        result.set(names.MFU, achieved / peak.tflops)


def record_measurement(
    result: Result, m: measure.Measurement, workload, scenario: Scenario, framework: Framework, spawned_at: float
) -> float:
    per_step = m.steps_per_time == 1  # sync=window: one time per window, no per-step latency
    latency = stats.summarize_ms(m.step_times_ms)
    device_latency = stats.summarize_ms(m.device_times_ms) if m.device_times_ms else {}
    own = workload.batch_size * len(m.step_times_ms) / (sum(m.step_times_ms) / 1e3)
    throughput = scenario.throughput(own, result)
    traffic = framework.traffic
    moved = traffic.per_step() if traffic.inputs in ("host", "loader") else {}
    for metric, value in (
        (names.THROUGHPUT, throughput),
        (names.LATENCY_P50, latency["p50"] if per_step else None),
        (names.LATENCY_P90, latency["p90"] if per_step else None),
        (names.LATENCY_P99, latency["p99"] if per_step else None),
        (names.LATENCY_MEAN, latency["mean"]),
        (names.LATENCY_STDEV, latency["stdev"] if per_step else None),
        (names.DEVICE_P50, device_latency.get("p50") if per_step else None),
        (names.DEVICE_MEAN, device_latency.get("mean")),
        (names.TIME_TO_FIRST_STEP, m.first_step_done_at - spawned_at),
        (names.STEPS, m.steps),
        (names.MEASURED_S, m.duration_s),
        (names.TO_DEVICE_BYTES, moved.get("to_device_bytes")),
        (names.TO_HOST_BYTES, moved.get("to_host_bytes")),
        (names.COPIES, moved.get("copies")),
    ):
        result.set(metric, value)
    if framework.startup:
        framework.startup.mark("first_step", at=m.first_step_done_at)
        for phase, seconds in framework.startup.seconds.items():
            result.set(startup.METRICS[phase], seconds)
        result.details["startup"] = framework.startup.details
    result.measurement = Measurement(
        warmup_steps=m.warmup_steps,
        steps=m.steps,
        duration_s=m.duration_s,
        reached_minimums=m.reached_minimums,
        window=list(m.window),
        ci_rel=m.ci_rel if m.ci_rel != float("inf") else None,
        step_times_ms=m.step_times_ms,
        device_times_ms=m.device_times_ms,
        sync=workload.sync.value,
        steps_per_time=m.steps_per_time,
        inputs=traffic.inputs,
        pinned=traffic.pinned,
    )
    return throughput


def record_energy(result: Result, meter: Optional[nvml.EnergyMeter], m: measure.Measurement, batch_size: int) -> None:
    if meter is None:
        return
    if meter.joules is None or not meter.seconds:
        result.details["energy"] = {"source": meter.source, "missing": meter.why or "no reading"}
        return
    result.details["energy"] = {
        "source": meter.source,
        "scope": meter.scope,
        "joules": meter.joules,
        "seconds": meter.seconds,
    }
    result.set(names.ENERGY_PER_STEP, meter.joules / m.steps)
    result.set(names.ENERGY_PER_SAMPLE, meter.joules / (m.steps * batch_size))
    result.set(names.POWER_MEAN, meter.joules / meter.seconds)


def record_memory(result: Result, framework: Framework, sampler) -> None:
    readings = framework.memory() + (sampler.readings() if framework.device == "cuda" else [])
    readings.append(
        {
            "source": "rusage.ru_maxrss",
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "scope": "host memory, peak resident set of the worker process",
        }
    )
    result.memory = [MemoryReading(**reading) for reading in readings]
    result.memory_peak_source = result.memory[0].source
    result.set(names.MEMORY_PEAK, result.memory[0].peak_mb)


def run_workload(job: Job, result: Result, state: dict[str, Any]) -> None:
    config = job_config.bench_config(job)
    workload = config.workload
    scenario = scenarios.get(workload.kind)()
    entry, shape, framework = setup(job, config, state)
    device = framework.device

    log(f"building {entry.name} ({entry.size}) for {workload.kind} on {device}")
    sampler = nvml.MemorySampler() if device == "cuda" else contextlib.nullcontext()
    if scenario.run_worker is not None:  # the scenario runs the worker itself (serve: a server)
        with sampler:
            scenario.run_worker(job, config, framework, entry, shape, result, wait_for_tenants, log)
        result.model.params = framework.param_count()
        record_memory(result, framework, sampler)
        return
    step = scenario.build_step(framework, entry, workload, shape, config.seed)
    _held.append(step)
    result.model.params = framework.param_count()
    energy = nvml.EnergyMeter() if device == "cuda" else None
    timed = scenario.time_limited

    def before_measuring() -> None:
        wait_for_tenants(job)
        if isinstance(sampler, nvml.MemorySampler):
            sampler.sample()  # NVML is read around the measured steps, never during them (runners/nvml.py)
        if energy:
            energy.start()

    with sampler:  # its exit reads memory again, right after the steps and the energy counter
        m = measure.run(
            step,
            framework.synchronize,
            warmup_steps=workload.warmup_steps,
            min_steps=workload.min_steps,
            min_duration_s=workload.min_duration_s if timed else 0.0,
            max_duration_s=workload.max_duration_s if timed else float("inf"),
            timer=framework.step_timer(),
            progress=log,
            before_measuring=before_measuring,
            target_ci=workload.target_ci if timed else None,
            sync_every=workload.sync_every if workload.sync is Sync.window else 1,
        )
        if energy:
            energy.stop()
    if isinstance(sampler, nvml.MemorySampler) and sampler.sm_clock_mhz:
        # At entry, before the measured steps, right after them: a GPU still clocking up shows here.
        result.details["sm_clock_mhz"] = sampler.sm_clock_mhz
        result.details["sm_clock_max_mhz"] = sampler.sm_clock_max_mhz
    throughput = record_measurement(result, m, workload, scenario, framework, job.spawned_at)
    record_energy(result, energy, m, workload.batch_size)
    scenario.derive(result, framework, workload, m)  # before profiling adds steps of its own

    if config.profile:
        from runners.worker import profiler

        log(f"profiling {config.profile_steps} more steps")
        run_dir = Path(job.run_dir)
        if entry.framework == "tensorflow":
            profile = profiler.profile_tensorflow(step, framework.synchronize, config.profile_steps, run_dir)
        else:
            profile = profiler.profile_torch(step, framework.synchronize, config.profile_steps, device, run_dir)
        result.details["profile"] = profile
        for name, value in profile["per_step"].items():
            result.set(profiler.PER_STEP[name], value)

    record_memory(result, framework, sampler)

    result.measurement.final_loss = framework.final_loss()
    tokens = entry.items_per_sample(shape)
    if tokens and workload.kind != "generate":
        result.set(names.TOKENS_PER_S, throughput * tokens)
    mfu(result, scenario, entry, shape, framework)
    result.status = SUCCESS
    log(f"{throughput:.2f} samples/s, mean step {result.value('latency_ms_mean'):.2f} ms over {m.steps} steps")


def run_diagnostic(job: Job, result: Result, state: dict[str, Any]) -> None:
    from runners.diagnostics import diagnostics

    diagnostics.get(job.task).run(job, result, log)


TASKS: dict[str, Callable[[Job, Result, dict[str, Any]], None]] = {
    "workload": run_workload,
    "parity": run_parity,
    "probe": run_diagnostic,
    "microbench": run_diagnostic,
}


def device_name(kind: str, described: dict[str, Any], framework: Framework | None) -> Optional[str]:
    """The device this run used, as this worker observed it: the CPU for a CPU run; for a
    CUDA run the device the framework or runtime reports (its own description, torch.cuda in
    this process, a runtime's provider), else None. Never the CPU's name for a CUDA run: a
    run whose framework saw no GPU did not run on one, whatever NVML lists."""
    if kind != "cuda":
        return fingerprint.cpu_model()
    for seen in (
        lambda: described.get("cuda_device"),
        lambda: evidence.device_seen(fingerprint.mapped_files()),  # torch.cuda or TensorFlow here (diagnostics)
        lambda: framework.device_seen() if framework else None,  # ONNX Runtime, MNN: the provider's GPU
    ):
        with contextlib.suppress(Exception):
            if name := (seen() or {}).get("name"):
                return str(name)
    return None


def record_environment(job: Job, result: Result, framework: Framework | None) -> None:
    """What this process saw, whatever happened before: never raises."""
    extra: dict[str, Any] = {"suite": job.suite, "framework": {}}
    with contextlib.suppress(Exception):
        if forked := startup.inherited():  # also for a run that failed before its start-up was recorded
            result.details.setdefault("startup", {}).setdefault("forked", forked)
    with contextlib.suppress(Exception):
        extra["framework"] = framework.describe() if framework else {}
    with contextlib.suppress(Exception):
        result.device.name = device_name(result.device.kind, extra["framework"], framework)
    with contextlib.suppress(Exception):
        if job.backend["device"] == "cuda":
            extra["gpus"] = nvml.visible_gpus()[0]
    with contextlib.suppress(Exception):
        result.environment = fingerprint.collect(extra)


def record_evidence(job: Job, result: Result, framework: Optional[Framework] = None) -> None:
    """What this worker saw of its backend (and of its runtime's provider); a success whose
    layer did not engage is invalid."""
    try:
        result.evidence = evidence.collect(job, framework)
        result.details.update(evidence.framework_details(framework))
    except Exception as exc:  # noqa: BLE001
        log(f"could not collect the backend evidence: {exc}")
        result.evidence = None
    engaged = result.evidence is not None and result.evidence.engaged
    if result.ok and not engaged:
        if result.evidence is None or result.evidence.required:
            result.status = INVALID
            log(f"INVALID: {result.evidence.verdict if result.evidence else 'no evidence of the backend'}")
        else:
            log(f"warning (backend.require_engagement=false): {result.evidence.verdict}")


def main(argv: list[str]) -> int:
    job_path = Path(argv[0])
    signal.signal(signal.SIGTERM, _stopper(job_path.parent))
    job = Job.load(job_path)
    result = Result.for_job(job)
    state: dict[str, Any] = {}
    try:
        TASKS[job.task](job, result, state)
    except BaseException as exc:  # noqa: BLE001  (every failure becomes a recorded result)
        tail = "".join(traceback.format_exception(exc)[-30:])
        result.fail(getattr(exc, "error_type", type(exc).__name__), str(exc) or repr(exc), tail)
        log(f"FAILED: {type(exc).__name__}: {exc}")
        print(tail, file=sys.stderr, flush=True)
    finally:
        record_environment(job, result, state.get("framework"))
        record_evidence(job, result, state.get("framework"))
        result.finished_at = time.time()
        rank = int(os.environ.get("RANK", "0"))  # torchrun: rank 0 writes the run's result
        result.write(job_path.parent / (RESULT_FILE if rank == 0 else f"result-rank{rank}.json"))
    code = 0 if result.status in (SUCCESS, INVALID) else 1  # invalid: it ran; the verdict is in the file
    if _is_ranked(job):
        end_rank(code)
    return code


def _is_ranked(job: Job) -> bool:
    """A torchrun rank (the scenario's processes), which must leave through end_rank."""
    return job.task == "workload" and "RANK" in os.environ and "LOCAL_RANK" in os.environ
