"""`python -m runners.cli.diagnose diagnostic=probe|microbench backend=<gpu backend> ...`
(`make probe`, `make microbench`): a diagnostic of a GPU backend itself, no model. The
probe with a compute share configured also probes the bare GPU first, and its group
record holds the share achieved."""

from __future__ import annotations

import sys
from typing import Optional

from runners.config import DiagnoseConfig
from runners.contracts import GroupRef, Result
from runners.diagnostics.probe import COMPUTE_SHARE_ACHIEVED
from runners.errors import USER_ERRORS, one_line
from runners.parent import compose, groups
from runners.parent.console import print_summary, progress
from runners.parent.launch import launch, plan_text
from runners.parent.plan import plan_diagnostic

SHARE_TOLERANCE_PCT = 10.0  # the compute share holds when achieved within this many points of configured


def compute_share(reference: Result, probe: Result, configured: float) -> tuple[float, bool]:
    achieved = 100 * probe.value("compute_tflops") / reference.value("compute_tflops")
    return achieved, abs(achieved - configured) <= SHARE_TOLERANCE_PCT


def main(argv: Optional[list[str]] = None) -> int:
    from runners.cli.bench import Session, check_output_dir

    try:
        config: DiagnoseConfig = compose.command_config(sys.argv[1:] if argv is None else argv, "diagnose")
        plan_ = plan_diagnostic(config)
        if config.dry_run:
            print(plan_text(plan_))
            return 0
        check_output_dir(plan_.results_dir)
    except USER_ERRORS as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    session = Session()
    with progress(plan_.run_name) as update:
        reference = groups.native_reference(plan_, update) if plan_.task == "probe" else None
        with plan_.backend.session():
            group_ref = None
            group = None
            if reference is not None:
                group = groups.new_group("probe_reference", plan_, "share")
                group_ref = GroupRef("probe_reference", group.id, "probe")
            result, run_dir = launch(plan_, update, group_ref)
    if group is not None and result.ok:
        configured = plan_.backend.compute_share()
        achieved, holds = compute_share(reference, result, configured)
        group.set(COMPUTE_SHARE_ACHIEVED, achieved)
        group.details.update(
            compute_share_configured=configured, compute_share_holds=holds, native_reference_run=reference.run_id
        )
    session.record_group(config, group and groups._finish(group, [(result, run_dir)]), [(result, run_dir)])
    print_summary(session.finished)
    return 0 if all(row.result.ok and row.tracked for row in session.finished) else 1


if __name__ == "__main__":
    sys.exit(main())
