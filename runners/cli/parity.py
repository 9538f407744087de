"""`python -m runners.cli.parity model=bert candidate="backend=vgpu" [baseline=...] [steps=5]
[other overrides of both sides]` (`make parity`): the same seeded weights and inputs on a
baseline (native, or the CPU without a GPU) and a candidate; compares the outputs and the
training loss over K steps within a tolerance for the precision, and records a pass/fail
verdict as the pair's group record (results/groups/, and the MLflow parent run)."""

from __future__ import annotations

import secrets
import shlex
import sys
from typing import Optional

from runners.analysis.parity import TOLERANCES, check_pair
from runners.config import CommandConfig, ParityConfig
from runners.contracts import GroupRef
from runners.errors import USER_ERRORS, UsageError, one_line
from runners.parent import compose
from runners.parent.console import progress
from runners.parent.launch import launch
from runners.parent.plan import Plan, plan
from runners.parent.runtimes import EXPORTED


def _key(arg: str) -> str:
    return arg.lstrip("+~").split("=", 1)[0].split(".", 1)[0].split("/", 1)[0]


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """(parity's own overrides, the bench overrides of both sides). Where results go and
    the tracking store are both: the command's and each side's."""
    own, common = set(ParityConfig.__dataclass_fields__), set(CommandConfig.__dataclass_fields__)
    mine = [arg for arg in argv if _key(arg) in own]
    both = [arg for arg in argv if _key(arg) not in own or _key(arg) in common]
    return mine, both


def _side(shared: list[str], side: str) -> Plan:
    try:
        words = shlex.split(side)
    except ValueError as exc:
        raise UsageError(f"a side is overrides such as backend=vgpu, got {side!r} ({exc})") from None
    return plan(compose.command_config([*shared, *words], "bench"))


def _run(plan_: Plan, steps: int, group: GroupRef):
    with progress(f"parity {plan_.run_name}") as update, plan_.backend.session():
        return launch(plan_, update, group, task="parity", parity_steps=steps)


def main(argv: Optional[list[str]] = None) -> int:
    argv = compose.quote_values(sys.argv[1:] if argv is None else argv, ("baseline", "candidate"))
    mine, both = split_arguments(argv)
    try:
        config: ParityConfig = compose.command_config(mine, "parity")
        from runners.nvml import visible_gpus

        baseline_spec = config.baseline or ("backend=native" if visible_gpus()[0] else "backend=cpu")
        base_plan, cand_plan = _side(both, baseline_spec), _side(both, config.candidate)
        if base_plan.entry.framework == "python":
            raise UsageError("parity needs a zoo model with a framework (e.g. model=bert)")
    except USER_ERRORS as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2

    name = f"parity-{cand_plan.entry.name}"
    group_id = f"{name}-{secrets.token_hex(3)}"
    inference_only = {p.config.runtime.name for p in (base_plan, cand_plan)} & set(EXPORTED)
    steps = 0 if inference_only else config.steps  # outputs only: an exported model does not train
    try:
        base = _run(base_plan, steps, GroupRef("parity", group_id, "baseline"))
        cand = _run(cand_plan, steps, GroupRef("parity", group_id, "candidate"))
    except USER_ERRORS as exc:  # a side's daemon or server that does not start
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    precision = cand_plan.config.workload.precision.value
    group, checks = check_pair(group_id, name, base, cand, precision, steps)
    group.details.update(baseline=baseline_spec, candidate=config.candidate)
    group.write(cand_plan.results_dir)

    passed = group.details["verdict"] == "pass"
    print(
        f"{name}: baseline `{baseline_spec}` vs candidate `{config.candidate}` ({precision}, "
        f"tolerance atol {TOLERANCES[precision][0]:g} + rtol {TOLERANCES[precision][1]:g})"
    )
    for check in checks:
        print(
            f"  {check.name}: max abs err {check.max_abs_err:.3g} (bound {check.bound:.3g}), "
            f"max rel err {check.max_rel_err:.3g} -> {'pass' if check.passed else 'FAIL'}"
        )
    if inference_only:
        print(f"  loss: not compared ({', '.join(sorted(inference_only))} runs inference only)")
    for result, _ in (base, cand):
        if result.error:
            print(f"  {result.run_name} failed: {result.error.type}: {result.error.message}")
        elif result.status == "invalid":  # it ran, but not where it was asked to (a provider, a layer)
            print(f"  {result.run_name} invalid: {result.evidence.verdict if result.evidence else 'no evidence'}")
    print(f"{name}: {'PASS' if passed else 'FAIL'}")

    if cand_plan.config.tracking.name == "mlflow":
        from runners.tracking.write import log_result, log_summary

        tags = {
            "kind": "parity",
            "group": group_id,
            "model": cand_plan.entry.name,
            "baseline": baseline_spec,
            "candidate": config.candidate,
            "precision": precision,
            "verdict": group.details["verdict"],
            "status": group.status,
        }
        parent = log_summary(
            name,
            tags,
            {k: q.value for k, q in group.metrics.items()},
            passed,
            cand_plan.config.tracking,
            cand_plan.results_dir,
            (group.path(cand_plan.results_dir),),
        )
        for (result, run_dir), side in ((base, base_plan), (cand, cand_plan)):
            log_result(result, run_dir, side.config.tracking, side.results_dir, parent_run_id=parent)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
