"""Multi-tenant runs (`tenants=N`): the workload alone first, then N copies at once on
the same backend, each with its configured share, measuring in the same window."""
from __future__ import annotations

import secrets
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from runners.launch import launch
from runners.plan import Job

BARRIER_TIMEOUT_S = 600.0


def jain_fairness(values: list[float]) -> float:
    """(sum x)^2 / (n * sum x^2): 1 when all tenants get the same, 1/n when one gets all."""
    squares = sum(v * v for v in values)
    return sum(values) ** 2 / (len(values) * squares) if squares else 0.0


def window_overlap(windows: list[tuple[float, float]]) -> float:
    """Time all tenants measured together, as a fraction of the longest window."""
    common = min(end for _, end in windows) - max(start for start, _ in windows)
    longest = max(end - start for start, end in windows)
    return max(0.0, common) / longest if longest > 0 else 0.0


def summarize(alone: dict[str, Any], tenants: list[dict[str, Any]]) -> dict[str, float]:
    """The group's metrics; empty when the run alone or any tenant failed."""
    runs = [alone, *tenants]
    if any(r["status"] != "success" for r in runs):
        return {}
    throughputs = [r["metrics"]["throughput"] for r in tenants]
    slowdowns = [alone["metrics"]["throughput"] / t for t in throughputs]
    for result, slowdown in zip(tenants, slowdowns):
        result["metrics"]["slowdown"] = slowdown
    return {
        "tenants": float(len(tenants)),
        "aggregate_throughput": sum(throughputs),
        "alone_throughput": alone["metrics"]["throughput"],
        "jain_fairness": jain_fairness(throughputs),
        "mean_slowdown": statistics.fmean(slowdowns),
        "max_slowdown": max(slowdowns),
        "window_overlap": window_overlap([tuple(r["measurement"]["window"]) for r in tenants]),
    }


def run(job: Job, progress: Callable[[str], None]) -> tuple[tuple[dict, Path], list[tuple[dict, Path]], str]:
    """((alone result, dir), [(tenant result, dir)...], group id). Call inside the backend's session."""
    count = job.config.tenants
    group = f"{job.run_name}-x{count}-{secrets.token_hex(3)}"
    progress("alone (reference for slowdown)")
    alone = launch(job, progress, tenant={"group": group, "index": None, "of": count, "role": "alone"})
    barrier = job.results_dir / "runs" / f".barrier-{group}"
    barrier.mkdir(parents=True)
    tenant_info = [{"group": group, "index": i, "of": count, "role": "tenant", "barrier_dir": str(barrier),
                    "barrier_timeout_s": min(BARRIER_TIMEOUT_S, job.config.timeout_s)} for i in range(count)]

    def launch_tenant(info: dict[str, Any]) -> tuple[dict, Path]:
        result, run_dir = launch(job, progress if info["index"] == 0 else lambda _: None, tenant=info)
        if result["status"] != "success":  # release the others from the barrier at once
            (barrier / f"failed-{info['index']}").touch()
        return result, run_dir

    with ThreadPoolExecutor(max_workers=count) as pool:
        together = list(pool.map(launch_tenant, tenant_info))
    for marker in barrier.iterdir():
        marker.unlink()
    barrier.rmdir()
    return alone, together, group
