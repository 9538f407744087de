"""`python -m runners.cli.ab baseline="<overrides>" candidate="<overrides>" repeats=N [tolerance=0.02]
[overrides of both sides]` (`make ab`): an interleaved A/B comparison. The sides' runs alternate
in time (baseline, candidate, baseline, ...), so that a machine that drifts (clocks, heat,
another tenant arriving) weighs on both alike and shows in each side's spread instead of
reading as a difference; then the comparison of exactly these runs is printed. Exit 1 when
the candidate is slower or a run did not succeed: the release gate (docs/comparing.md)."""

from __future__ import annotations

import secrets
import shlex
import sys
from pathlib import Path
from typing import Optional

from runners.analysis import tables
from runners.analysis.compare import Comparison, compare_runs
from runners.cli.analyze import _print
from runners.cli.bench import Session, check_output_dir
from runners.config import AbConfig, CommandConfig, flatten
from runners.contracts import GroupRef, Result
from runners.errors import USER_ERRORS, UsageError, one_line
from runners.parent import compose
from runners.parent.console import Finished, print_summary, progress
from runners.parent.launch import launch, plan_text
from runners.parent.plan import Plan, plan
from runners.redact import redact_tree, redact_value
from runners.tracking.read import Run
from runners.tracking.write import tags_of


def _key(arg: str) -> str:
    return arg.lstrip("+~").split("=", 1)[0].split(".", 1)[0].split("/", 1)[0]


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """(ab's own overrides, the bench overrides of both sides); where results go and the store are both."""
    own, common = set(AbConfig.__dataclass_fields__), set(CommandConfig.__dataclass_fields__)
    return [a for a in argv if _key(a) in own], [a for a in argv if _key(a) not in own or _key(a) in common]


def _words(side: str) -> list[str]:
    try:
        return shlex.split(side)
    except ValueError as exc:
        raise UsageError(f"a side is overrides such as backend=vgpu, got {side!r} ({exc})") from None


def _plan(shared: list[str], words: list[str]) -> Plan:
    found = plan(compose.command_config([*shared, *words], "bench"))
    config = found.config
    if config.repeats != 1 or config.tenants != 1 or config.workload.kind == "serve":
        raise UsageError(
            "make ab alternates single runs of a throughput workload: give repeats=N to make ab itself, "
            "not to a side; tenants and serve workloads are compared with make bench and make compare"
        )
    return found


def side_keys(*sides: list[str]) -> frozenset[str]:
    """The keys the sides are defined by (left out of the pairing): backend=vgpu -> backend."""
    return frozenset(word.lstrip("+~").split("=", 1)[0] for words in sides for word in words)


def as_run(result: Result) -> Run:
    """A finished result as the comparison reads a run from the store (tracking/write.py logs the
    same tags, params and metrics): the comparison needs no store, so it works unsynced too."""
    params = {k: redact_value(str(v)) for k, v in flatten(redact_tree(result.config)).items()}
    params["model.resolved_size"] = str(result.model.size if result.model else "")
    metrics = {k: q.value for k, q in result.metrics.items()}
    run = Run(result.run_id, tags_of(result), params, metrics, int(result.started_at * 1000))
    run._result = result
    return run


class _Runs:
    """What compare_runs asks of a store, for these runs alone: each side's variation is its own
    runs' spread, never a calibration measured in another block of time."""

    def run_to_run_cv(self, run: Run):
        return None

    def result(self, run: Run) -> Result:
        return run._result


def alternate(base: Plan, cand: Plan, repeats: int, session: Session, group_id: str) -> list[Finished]:
    """baseline, candidate, baseline, candidate... each run recorded as it ends."""
    finished = []
    for index in range(repeats):
        for role, plan_ in (("baseline", base), ("candidate", cand)):
            with progress(f"ab {role} {index + 1}/{repeats} {plan_.run_name}") as update, plan_.backend.session():
                result, run_dir = launch(plan_, update, GroupRef("ab", group_id, role, index, repeats))
            finished.append(session.track(plan_.config, Finished(result, run_dir, True)))
    return finished


def compare_finished(finished: list[Finished], tolerance: float, sides: frozenset[str], specs) -> Comparison:
    succeeded = [f.result for f in finished if f.result.status == "success"]
    by_role = {role: [as_run(r) for r in succeeded if r.group.role == role] for role in ("baseline", "candidate")}
    return compare_runs(_Runs(), by_role["baseline"], by_role["candidate"], tolerance, *specs, sides)


def main(argv: Optional[list[str]] = None) -> int:
    argv = compose.quote_values(sys.argv[1:] if argv is None else argv, ("baseline", "candidate"))
    mine, both = split_arguments(argv)
    try:
        config: AbConfig = compose.command_config(mine, "ab")
        base_words, cand_words = _words(config.baseline), _words(config.candidate)
        base, cand = _plan(both, base_words), _plan(both, cand_words)
        for results_dir in {base.results_dir, cand.results_dir}:
            check_output_dir(results_dir)
    except USER_ERRORS as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    if base.config.dry_run or cand.config.dry_run:  # the plan of each side, alternated `repeats` times
        print(f"{config.repeats} x (baseline, candidate):\n{plan_text(base)}\n{plan_text(cand)}")
        return 0
    group_id = f"ab-{secrets.token_hex(3)}"
    session = Session()
    try:
        finished = alternate(base, cand, config.repeats, session, group_id)
    except KeyboardInterrupt:
        print(f"interrupted: {len(session.finished)} finished run(s) kept", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:  # a side's daemon or server that does not start
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print_summary(finished)
    specs = (config.baseline or "(defaults)", config.candidate)
    comparison = compare_finished(finished, config.tolerance, side_keys(base_words, cand_words), specs)
    _print(comparison, config.wide)
    for path in tables.write_tables(comparison, Path(cand.results_dir) / "tables"):
        print(f"wrote {path}")
    print(f"{group_id}: the runs carry tags group_id={group_id}, group_role=baseline|candidate")
    failed = [f.result.display_name for f in finished if f.result.status != "success"]
    if failed:
        print(f"not every run succeeded, left out: {', '.join(failed)}", file=sys.stderr)
    for row in comparison.regressions:
        print(
            f"REGRESSION: {row.model}/{row.workload}/{row.precision}/bs{row.batch_size}/{row.size}: "
            f"throughput x{row.ratio:.3f} {row.interval_text}",
            file=sys.stderr,
        )
    return 1 if failed or comparison.regressions or not comparison.rows else 0


if __name__ == "__main__":
    sys.exit(main())
