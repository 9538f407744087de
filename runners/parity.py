"""Numerical parity (`make parity model=bert candidate="backend=vgpu"`): the same seeded
weights and inputs on a baseline (native, or the CPU without a GPU) and a candidate;
compares the outputs and the training loss over K steps, each within a tolerance
for the precision, and records a pass/fail verdict."""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runners import compose, console, results
from runners.errors import UsageError, one_line
from runners.launch import launch
from runners.plan import Job, plan
from zoo.registry import UnknownName

# (absolute, relative) tolerance per precision, for outputs and for losses: a check
# passes when max|candidate - baseline| <= atol + rtol * max|baseline|.
TOLERANCES = {"fp32": (1e-5, 1e-4), "fp16": (1e-2, 1e-2), "bf16": (5e-2, 5e-2)}


@dataclass
class Check:
    name: str
    max_abs_err: float
    max_rel_err: float
    bound: float
    passed: bool


def compare_arrays(name: str, baseline: np.ndarray, candidate: np.ndarray, precision: str) -> Check:
    atol, rtol = TOLERANCES[precision]
    if baseline.shape != candidate.shape:
        return Check(name, float("inf"), float("inf"), 0.0, False)
    difference = np.abs(candidate.astype(np.float64) - baseline.astype(np.float64))
    scale = float(np.max(np.abs(baseline))) if baseline.size else 0.0
    max_abs = float(difference.max()) if difference.size else 0.0
    bound = atol + rtol * scale
    return Check(name, max_abs, max_abs / scale if scale else max_abs, bound, bool(max_abs <= bound))


def _job(overrides: list[str]) -> Job:
    ready = compose.check_overrides(overrides)
    return plan(compose.compose_config(ready))


def _run(job: Job, steps: int) -> tuple[dict[str, Any], Path]:
    with console.progress(f"parity {job.run_name}") as update, job.backend.session():
        return launch(job, update, task={"task": "parity", "parity_steps": steps})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runners.parity", description=__doc__)
    parser.add_argument("--baseline", default="", help='overrides of the baseline, default "backend=native" '
                        '(the CPU where there is no GPU)')
    parser.add_argument("--candidate", required=True, help='overrides of the candidate, e.g. "backend=vgpu"')
    parser.add_argument("--steps", type=int, default=5, help="training steps whose losses are compared")
    parser.add_argument("overrides", nargs="*", help="overrides of both sides, e.g. model=bert model.size=tiny")
    args = parser.parse_intermixed_args(argv)  # make parity: model=... --candidate ... ARGS
    from runners.nvml import visible_gpus

    baseline_spec = args.baseline or ("backend=native" if visible_gpus()[0] else "backend=cpu")
    try:
        if args.steps < 1:
            raise UsageError(f"steps must be >= 1, got {args.steps}")
        base_job = _job([*args.overrides, *shlex.split(baseline_spec)])
        cand_job = _job([*args.overrides, *shlex.split(args.candidate)])
        if base_job.entry is None or base_job.entry.framework == "python":
            raise UsageError("parity needs a zoo model with a framework (e.g. model=bert)")
    except (UsageError, UnknownName) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2

    (base, base_dir), (cand, cand_dir) = _run(base_job, args.steps), _run(cand_job, args.steps)
    precision = cand_job.config.workload.precision.value
    checks: list[Check] = []
    if base["status"] == cand["status"] == "success":
        checks.append(compare_arrays("outputs", np.load(base_dir / "outputs.npy"), np.load(cand_dir / "outputs.npy"),
                                     precision))
        checks.append(compare_arrays(f"loss over {args.steps} steps", np.array(base["parity"]["losses"]),
                                     np.array(cand["parity"]["losses"]), precision))
    passed = bool(checks) and all(c.passed for c in checks)
    for result, run_dir in ((base, base_dir), (cand, cand_dir)):
        result["parity"] = {**(result.get("parity") or {}), "verdict": "pass" if passed else "fail",
                            "checks": [c.__dict__ for c in checks], "precision": precision}
        results.write(run_dir / results.RESULT_FILE, result)

    name = f"parity-{cand_job.entry.name}"
    print(f"{name}: baseline `{baseline_spec}` vs candidate `{args.candidate}` ({precision}, "
          f"tolerance atol {TOLERANCES[precision][0]:g} + rtol {TOLERANCES[precision][1]:g})")
    for check in checks:
        print(f"  {check.name}: max abs err {check.max_abs_err:.3g} (bound {check.bound:.3g}), "
              f"max rel err {check.max_rel_err:.3g} -> {'pass' if check.passed else 'FAIL'}")
    for result in (base, cand):
        if result["error"]:
            print(f"  {result['run_name']} failed: {result['error']['type']}: {result['error']['message']}")
    print(f"{name}: {'PASS' if passed else 'FAIL'}")

    if cand_job.config.tracking.name == "mlflow":
        from runners.tracking import log_result, log_summary

        metrics = {"passed": float(passed)}
        for check in checks:
            key = "outputs" if check.name == "outputs" else "loss"
            metrics.update({f"{key}_max_abs_err": check.max_abs_err, f"{key}_max_rel_err": check.max_rel_err})
        tags = {"kind": "parity", "model": cand_job.entry.name, "baseline": baseline_spec, "candidate": args.candidate,
                "precision": precision, "verdict": "pass" if passed else "fail", "status": "success" if passed else "failed"}
        parent = log_summary(name, tags, metrics, passed, cand_job.config.tracking, cand_job.results_dir)
        for (result, run_dir), job in (((base, base_dir), base_job), ((cand, cand_dir), cand_job)):
            log_result(result, run_dir, job.config.tracking, job.results_dir, parent_run_id=parent)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
