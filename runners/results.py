"""The one results schema (documented key by key in docs/results_schema.md).

A result is a JSON object written atomically to results/runs/<run-id>/result.json by
the worker, or by the parent when the worker could not (timeout, crash). Standard
library only: the worker may run where nothing but the framework is installed."""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
LOG_FILE = "worker.log"
JOB_FILE = "job.json"

# The stable metric names (MLflow metric keys); units are in result["units"].
METRIC_UNITS = {
    "throughput": "samples/s",
    "tokens_per_s": "tokens/s",
    "latency_ms_p50": "ms",
    "latency_ms_p90": "ms",
    "latency_ms_p99": "ms",
    "latency_ms_mean": "ms",
    "latency_ms_stdev": "ms",
    "device_ms_p50": "ms",
    "device_ms_mean": "ms",
    "memory_peak_mb": "MiB",
    "time_to_first_step_s": "s",
    "steps": "count",
    "measured_s": "s",
    # generation (decoder models)
    "ttft_ms_p50": "ms",
    "ttft_ms_mean": "ms",
    "tpot_ms_p50": "ms",
    "tpot_ms_mean": "ms",
    "output_tokens_per_s": "tokens/s",
    # model FLOPs utilization (GPU runs at the default size and input shape)
    "achieved_tflops": "TFLOP/s",
    "mfu": "ratio",
    # profile (profile=true): per measured-workload step
    "prof_kernel_launches": "count/step",
    "prof_api_launch": "count/step",
    "prof_api_memcpy": "count/step",
    "prof_api_synchronize": "count/step",
    "prof_api_malloc": "count/step",
    "prof_api_free": "count/step",
    "prof_synchronizations": "count/step",
    "prof_h2d_bytes": "bytes/step",
    "prof_d2h_bytes": "bytes/step",
    "prof_d2d_bytes": "bytes/step",
    "prof_cpu_ops": "count/step",
    "prof_gpu_busy_fraction": "ratio",
    # quota probe
    "memory_total_seen_mb": "MiB",
    "largest_allocation_mb": "MiB",
    "filled_before_failure_mb": "MiB",
    "compute_tflops": "TFLOP/s",
    "compute_share_achieved": "%",
    # multi-tenant groups (the parent run)
    "aggregate_throughput": "samples/s",
    "alone_throughput": "samples/s",
    "jain_fairness": "ratio",
    "slowdown": "ratio",
    "mean_slowdown": "ratio",
    "max_slowdown": "ratio",
    "window_overlap": "ratio",
    "scaling_efficiency": "ratio",
    "single_process_throughput": "samples/s",
    "repeats": "count",
    "throughput_mean": "samples/s",
    "throughput_stdev": "samples/s",
    "throughput_cv": "ratio",
}


def new(job: dict[str, Any]) -> dict[str, Any]:
    """The skeleton of a result for `job`, before anything ran (status `failed` until it succeeds)."""
    config = job["config"]
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": job["run_id"],
        "run_name": job["run_name"],
        "config_hash": job.get("config_hash"),
        "status": "failed",
        "error": None,
        "model": {"name": config["model"]["name"], "size": job["model"]["size"],
                  "framework": job["model"]["framework"], "task": job["model"]["task"], "params": None},
        "workload": config["workload"]["kind"],
        "backend": job["backend"],
        "device": {"kind": job["backend"]["device"], "name": None},
        "config": config,
        "metrics": {},
        "units": {},
        "memory": [],
        "measurement": None,
        "environment": {},
        "tenant": job.get("tenant"),
        "repeat": job.get("repeat"),
        "started_at": job.get("spawned_at") or time.time(),
        "finished_at": None,
    }


def tenant_suffix(tenant: dict[str, Any] | None) -> str:
    """'-alone' or '-t<i>' for the runs of a multi-tenant group, '' otherwise."""
    if not tenant:
        return ""
    return "-alone" if tenant["role"] == "alone" else f"-t{tenant['index']}"


def set_metrics(result: dict[str, Any], metrics: dict[str, float | None]) -> None:
    clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    result["metrics"] = clean
    result["units"] = {k: METRIC_UNITS[k] for k in clean}


def fail(result: dict[str, Any], error_type: str, message: str, traceback_tail: str = "") -> dict[str, Any]:
    result["status"] = "failed"
    result["error"] = {"type": error_type, "message": message, "traceback": traceback_tail}
    result["finished_at"] = time.time()
    return result


def write(path: Path, result: dict[str, Any]) -> None:
    """Atomic: a reader sees the old file or the whole new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".result-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(result, handle, indent=2, sort_keys=True, allow_nan=False, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_successful(results_dir: Path, config_hash: str) -> Path | None:
    """The run directory of a successful result of this configuration, if any (for resume)."""
    for path in sorted(Path(results_dir).glob(f"runs/*/{RESULT_FILE}")):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if result.get("config_hash") == config_hash and result.get("status") == "success":
            return path.parent
    return None


def load(path: Path) -> dict[str, Any]:
    result = json.loads(Path(path).read_text())
    version = result.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {version!r}, this suite reads {SCHEMA_VERSION}")
    return result
