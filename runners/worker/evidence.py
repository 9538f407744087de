"""What the worker itself sees of its backend, gathered after its work while the device
is still in use: the backend's variables, the libraries mapped into it, the device the
framework got. The backend's own checks (runners/backends/) turn it into a verdict; a
layer that did not engage makes the run `invalid`, never a `success`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from runners.backends import Seen, backends
from runners.contracts import Check, Evidence, Job
from runners.redact import redact_env
from runners.worker import job_config
from runners.worker.cudart import runtime_device
from runners.worker.fingerprint import gpu_library, mapped_files


def gpu_libraries(mapped: list[str]) -> dict[str, str]:
    """Which file each CUDA-related library came from (several files of one name: all of them)."""
    found: dict[str, list[str]] = {}
    for path in mapped:
        if name := gpu_library(path):
            found.setdefault(name, []).append(path)
    return {name: ", ".join(paths) for name, paths in found.items()}


def device_seen(mapped: list[str]) -> dict[str, Any]:
    """The CUDA device the framework initialized, as the framework reports it; {} for none.
    Without torch.cuda, the CUDA runtime the process loaded is asked (runners/worker/cudart.py)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        _, total = torch.cuda.mem_get_info(index)  # cudaMemGetInfo: the quota under an interception layer
        return {
            "source": "torch.cuda",
            "index": index,
            "name": props.name,
            "uuid": str(getattr(props, "uuid", "")),
            "mig": "MIG" in props.name,
            "memory_total_mb": props.total_memory / 2**20,
            "memory_total_seen_mb": total / 2**20,
        }
    if torch is not None and torch.cuda.is_available():
        return {}  # torch never initialized its device: asking the runtime now would create one
    tf = sys.modules.get("tensorflow")
    if tf is not None and tf.config.list_logical_devices("GPU"):
        # TensorFlow names its device but reports no total: its own libcudart does.
        return runtime_device(mapped, "tensorflow") or {"source": "tensorflow", "name": None, "uuid": None}
    return runtime_device(mapped, "the process's CUDA runtime")


def framework_details(framework) -> dict[str, Any]:
    """What the framework recorded of how it ran, for result.details: "compile" for a
    torch.compile run (its counters; its `compiled_mode_ran` check is among the runtime checks)."""
    compile_record = getattr(framework, "compile_record", None)
    record = compile_record() if compile_record else None
    return {"compile": record} if record else {}


def collect(job: Job, framework=None) -> Evidence:
    """The evidence and its verdict; a check that cannot even run is a failed check. A runtime
    adapter (`framework`) adds its own: the execution provider or backend that really ran, or
    (PyTorch) `compiled_mode_ran`: the requested torch.compile mode ran the measured steps."""
    mapped = mapped_files()
    seen = Seen(
        env=dict(os.environ),
        expected_env=dict(job.backend.get("env") or {}),
        mapped=mapped,
        device={},
        framework_loaded=any(m in sys.modules for m in ("torch", "tensorflow", "onnxruntime", "MNN")),
        pid=os.getpid(),
        run_dir=Path(job.run_dir),
    )
    checks: list[Check]
    config = None
    try:
        seen.device = (framework.device_seen() if framework else {}) or device_seen(mapped)
        config = job_config.backend_config(job)
        backend = backends.get(job.backend["name"])(config, Path(job.run_dir))
        checks = backend.engagement(seen) + (framework.runtime_checks() if framework else [])
        if not checks or all(c.name == "environment_applied" for c in checks):
            # The variables reached the worker: that shows it started, not that a layer engaged.
            checks.append(
                Check("layer_observed", False, "only the environment was compared: nothing observed the layer")
            )
    except Exception as exc:  # noqa: BLE001  (evidence that cannot be read is no evidence)
        checks = [Check("evidence_readable", False, f"{type(exc).__name__}: {exc}")]
    failed = [f"{c.name}: {c.detail}" for c in checks if not c.passed]
    return Evidence(
        env=redact_env({k: os.environ[k] for k in seen.expected_env if k in os.environ}),
        libraries=gpu_libraries(mapped),
        device=seen.device,
        checks=checks,
        engaged=not failed,
        verdict="engaged" if not failed else "not engaged: " + "; ".join(failed),
        required=getattr(config, "require_engagement", True),
    )
