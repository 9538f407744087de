"""A job's config typed again in the worker, with the schemas of its backend and its
workload kind. Here, not in runners/contracts.py: the contract stays free of registries,
so any module may import it without importing every backend and scenario."""

from __future__ import annotations

from runners.backends import backends
from runners.config import BackendConfig, BenchConfig, from_plain
from runners.contracts import Job
from runners.scenarios import scenarios


def backend_config(job: Job) -> BackendConfig:
    """The backend's typed config (its own schema), for the worker's engagement checks."""
    return from_plain(backends.get(job.backend["name"]).config_class, job.config["backend"])


def bench_config(job: Job) -> BenchConfig:
    """The typed config of a task that runs a model (workload, parity), with its backend's and
    its workload kind's own schemas."""
    own = {
        ("backend",): backends.get(job.config["backend"]["name"]).config_class,
        ("workload",): scenarios.get(job.config["workload"]["kind"]).config_class,
    }
    return from_plain(BenchConfig, job.config, own)
