"""Numerical parity: the same seeded weights and inputs on a baseline and a candidate;
the outputs and the training loss over K steps must agree within a tolerance for the
precision. The verdict is a group record of the pair, never written into either run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runners.contracts import SUCCESS, GroupMember, GroupRecord, Metric, Result

# (absolute, relative) tolerance per precision, for outputs and for losses: a check
# passes when max|candidate - baseline| <= atol + rtol * max|baseline|.
TOLERANCES = {"fp32": (1e-5, 1e-4), "fp16": (1e-2, 1e-2), "bf16": (5e-2, 5e-2)}
PASSED = Metric("passed", "bool", "parity: 1 when every check passed")
ERRORS = {
    f"{what}_{kind}": Metric(
        f"{what}_{kind}",
        "ratio" if kind == "max_rel_err" else "abs",
        f"parity: largest {kind.replace('_', ' ')} of the {what}",
    )
    for what in ("outputs", "loss")
    for kind in ("max_abs_err", "max_rel_err")
}


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


def check_pair(
    group_id: str, name: str, base: tuple[Result, Path], cand: tuple[Result, Path], precision: str, steps: int
) -> tuple[GroupRecord, list[Check]]:
    (b, b_dir), (c, c_dir) = base, cand
    checks: list[Check] = []
    if b.ok and c.ok:
        checks.append(
            compare_arrays("outputs", np.load(b_dir / "outputs.npy"), np.load(c_dir / "outputs.npy"), precision)
        )
        if steps:  # 0: a runtime that only infers (onnxruntime, mnn) has no loss curve to compare
            checks.append(
                compare_arrays(
                    f"loss over {steps} steps",
                    np.array(b.details["parity"]["losses"]),
                    np.array(c.details["parity"]["losses"]),
                    precision,
                )
            )
    passed = bool(checks) and all(check.passed for check in checks)
    group = GroupRecord(
        kind="parity",
        id=group_id,
        name=name,
        members=[GroupMember(b.run_id, "baseline", None, b.status), GroupMember(c.run_id, "candidate", None, c.status)],
        status=SUCCESS if passed else "failed",
        details={
            "verdict": "pass" if passed else "fail",
            "precision": precision,
            "tolerance": dict(zip(("atol", "rtol"), TOLERANCES[precision])),
            "checks": [asdict(check) for check in checks],
        },
    )
    group.set(PASSED, float(passed))
    for check in checks:
        what = "outputs" if check.name == "outputs" else "loss"
        group.set(ERRORS[f"{what}_max_abs_err"], check.max_abs_err)
        group.set(ERRORS[f"{what}_max_rel_err"], check.max_rel_err)
    return group, checks
