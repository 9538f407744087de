"""`python -m runners.cli.diagnose diagnostic=probe|microbench backend=<gpu backend> ...`
(`make probe`, `make microbench`): a diagnostic of a GPU backend itself, no model. The
probe with a compute share configured also probes the bare GPU first, and its group
record holds the share achieved (runners/parent/groups.run_diagnostic)."""

from __future__ import annotations

import sys
from typing import Optional

from runners.config import DiagnoseConfig
from runners.contracts import SUCCESS
from runners.errors import USER_ERRORS, one_line
from runners.parent import compose, groups
from runners.parent.console import console, group_lines, print_summary, progress
from runners.parent.launch import plan_text
from runners.parent.plan import plan_diagnostic


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
    try:
        with progress(plan_.run_name) as update:
            group, runs = groups.run_diagnostic(plan_, update)
    except USER_ERRORS as exc:  # the backend's daemon or server that does not start
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    session.record_group(config, group, runs)
    for line in group_lines(group):
        console.print(line, markup=False, highlight=False)
    print_summary(session.finished, [group])
    judged = group is None or group.status == SUCCESS  # a quota that does not hold is no success
    return 0 if judged and all(row.result.ok and row.tracked for row in session.finished) else 1


if __name__ == "__main__":
    sys.exit(main())
