"""Overhead attribution (docs/overhead_model.md): the slowdown a workload should see on
a candidate backend, from what one of its steps does (the baseline's profile) and what
each of those things costs more on the candidate (microbenchmarks of both)."""

from __future__ import annotations

from typing import Optional

from runners.diagnostics.microbench import LABEL, SIZES


def _bandwidth(micro: dict[str, float], direction: str, transfer_bytes: float, pinned: bool) -> Optional[float]:
    """GB/s at the benchmarked size nearest the workload's average transfer, from pinned or
    pageable host memory as the run's (workload.pinned); device-to-device copies apart."""
    size = min(SIZES, key=lambda s: abs(s - transfer_bytes))
    memory = "pinned" if pinned else "pageable"
    key = f"d2d_{LABEL[size]}_gbps" if direction == "d2d" else f"{direction}_{memory}_{LABEL[size]}_gbps"
    return micro.get(key)


def estimate(
    profile: dict[str, float],
    baseline: dict[str, float],
    candidate: dict[str, float],
    step_ms: float,
    pinned: bool = False,
) -> Optional[dict[str, float]]:
    """Estimated overhead % of the candidate, with its parts in ms per step; None without the inputs."""
    needed = ("launch_us", "launch_sync_us", "malloc_us", "free_us")
    if not profile or step_ms <= 0 or any(k not in baseline or k not in candidate for k in needed):
        return None
    launches = profile.get("prof_api_launch") or profile.get("prof_kernel_launches", 0.0)
    round_trip = lambda m: m["launch_sync_us"] - m["launch_us"]  # noqa: E731  (the wait beyond the launch)
    parts = {
        "launch_ms": launches * (candidate["launch_us"] - baseline["launch_us"]) / 1e3,
        "sync_ms": profile.get("prof_api_synchronize", 0.0) * (round_trip(candidate) - round_trip(baseline)) / 1e3,
        "malloc_ms": (
            profile.get("prof_api_malloc", 0.0) * (candidate["malloc_us"] - baseline["malloc_us"])
            + profile.get("prof_api_free", 0.0) * (candidate["free_us"] - baseline["free_us"])
        )
        / 1e3,
        "copy_ms": 0.0,
    }
    copies = max(1.0, profile.get("prof_api_memcpy", 0.0))
    for direction in ("h2d", "d2h", "d2d"):
        moved = profile.get(f"prof_{direction}_bytes", 0.0)
        if moved:
            base_bw, cand_bw = (
                _bandwidth(baseline, direction, moved / copies, pinned),
                _bandwidth(candidate, direction, moved / copies, pinned),
            )
            if base_bw and cand_bw:
                parts["copy_ms"] += (moved / (cand_bw * 1e9) - moved / (base_bw * 1e9)) * 1e3
    added = sum(parts.values())
    return {"estimated_overhead_pct": added / (step_ms + added) * 100, **parts}
