"""`python -m runners.cli.analyze compare|regressions|pin-baseline|report key=value ...`
(make compare, make regressions, make pin-baseline, make report): read recorded runs,
never run any. A side is space-separated key=value filters, a value with spaces quoted:
baseline="label='release 2.4' backend=native"."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from runners.analysis import compare as comparing
from runners.analysis import tables
from runners.analysis.capacity import capacity_rows
from runners.config import AnalyzeConfig
from runners.errors import USER_ERRORS, UsageError, one_line
from runners.parent import compose
from runners.tracking.read import Store, parse_side
from runners.tracking.write import StoreUnreachable, log_summary

COMMANDS = ("compare", "regressions", "pin-baseline", "report")
PINNED = "pinned-baseline"
VERDICT_STYLE = {"slower": "red", "faster": "green", "equivalent": "", "inconclusive": "yellow"}


def _print(comparison: comparing.Comparison, wide: bool = False, out: Optional[Console] = None) -> None:
    """The compact table fits 120 columns; `wide=true` (or --wide) shows every column, as the
    CSV and HTML files do."""
    if out is None:
        out = Console()
        if not out.is_terminal:
            out.width = max(out.width, 240 if wide else 120)
    table = Table(title=tables.title(comparison).replace("`", ""))
    for column in tables.COLUMNS if wide else tables.COMPACT_COLUMNS:
        table.add_column(column, no_wrap=column == "ratio [95% CI]")
    for row in comparison.rows:
        cells = tables.table_cells(row) if wide else tables.compact_cells(row)
        table.add_row(*cells, style=VERDICT_STYLE[row.verdict])
    out.print(table)
    for line in comparison.missing:  # whole lines: they are grepped
        out.print(f"not paired: {line}", soft_wrap=True, markup=False)
    for line in comparison.started_apart:
        out.print(
            f"start-up and host memory not compared: {line} (a forked worker skips the imports; "
            "fork_server=false on both sides compares them)",
            soft_wrap=True,
            markup=False,
        )
    for line in comparison.invalid:
        out.print(f"left out, invalid (its layer did not engage): {line}", soft_wrap=True, markup=False)
    if comparison.run_noise_unknown:
        out.print(f"note: {tables.NOISE_NOTE}")
    if not comparison.rows:
        out.print("no pairs: no work (a model, workload and every setting that changes it) ran on both sides")


def _print_capacity(rows: list) -> None:
    """Serve capacity searches on both sides: max rate at SLO, candidate / baseline."""
    if not rows:
        return
    out = Console()
    if not out.is_terminal:
        out.width = max(out.width, 160)
    table = Table(title="max rate at SLO (serve.search=capacity), requests/s")
    for column in ("model", "size", "settings", "baseline", "candidate", "ratio"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.model,
            row.size,
            row.settings,
            row.baseline_text,
            row.candidate_text,
            row.ratio_text,
        )
    out.print(table)


def _record(store: Store, comparison: comparing.Comparison, kind: str) -> list[Path]:
    paths = tables.write_tables(comparison, store.results_dir / "tables")
    verdicts = [row.verdict for row in comparison.rows]
    metrics = {
        "pairs": len(comparison.rows),
        "missing_pairs": len(comparison.missing),
        **{v: verdicts.count(v) for v in ("slower", "faster", "equivalent", "inconclusive")},
    }
    name = f"{kind}-{comparison.candidate or 'later'}-vs-{comparison.baseline}".replace(" ", "_")[:250]
    log_summary(
        name,
        {"kind": "comparison", "baseline": comparison.baseline, "candidate": comparison.candidate},
        metrics,
        not (kind == "regressions" and comparison.regressions),
        store.tracking,
        store.results_dir,
        tuple(paths),
    )
    return paths


def _report_candidates(store: Store, baseline: str, candidate: str) -> list[tuple[str, dict[str, str]]]:
    """The candidate sides of a report: the one given, or (a whole sweep) every other backend
    with runs, each with the baseline's other filters."""
    if candidate:
        return [(candidate, parse_side(candidate))]
    filters = parse_side(baseline)
    if "backend" not in filters:
        raise UsageError(
            "a report without a candidate compares the baseline's backend with every other one: name it, "
            'e.g. baseline="backend=native", or give candidate="backend=vgpu"'
        )
    others = {k: v for k, v in filters.items() if k != "backend"}
    backends = sorted({r.tags.get("backend", "") for r in store.runs(others)} - {filters["backend"], ""})
    if not backends:
        raise UsageError(f"no runs on a backend other than {filters['backend']} to compare with")

    def spec(backend: str) -> str:
        return " ".join(f"{k}={shlex.quote(v)}" for k, v in {"backend": backend, **others}.items())

    return [(spec(b), {**others, "backend": b}) for b in backends]


def _baseline(spec: str, results_dir: Path) -> str:
    if spec:
        return spec
    pinned = results_dir / PINNED
    if pinned.exists():
        return pinned.read_text().strip()
    raise UsageError('no baseline: pass baseline="label=release-2.3" (or any tags), or pin one with make pin-baseline')


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv or argv[0] not in COMMANDS:
            raise UsageError(f"the first word is the command: one of {', '.join(COMMANDS)}")
        command = argv[0]
        overrides = ["wide=true" if arg == "--wide" else arg for arg in argv[1:]]
        config: AnalyzeConfig = compose.command_config(
            compose.quote_values(overrides, ("baseline", "candidate")), "analyze"
        )
        results_dir = Path(config.results_dir).resolve()
        if command == "pin-baseline":
            parse_side(config.baseline)
            results_dir.mkdir(parents=True, exist_ok=True)
            (results_dir / PINNED).write_text(config.baseline + "\n")
            print(f"pinned baseline: {config.baseline} (make regressions compares later runs against it)")
            return 0
        baseline = _baseline(config.baseline, results_dir)
        if command == "compare" and not config.candidate:
            raise UsageError('compare needs a candidate, e.g. candidate="backend=vgpu"')
        candidate = parse_side(config.candidate) if config.candidate else None
        store = Store(config.tracking, results_dir)
        if command == "report":
            from runners.analysis import report

            comparisons = [
                comparing.compare(store, parse_side(baseline), side, config.tolerance, baseline, spec)
                for spec, side in _report_candidates(store, baseline, config.candidate)
            ]
            print(f"report: {report.write(store, comparisons)}")
            return 0
        comparison = comparing.compare(
            store, parse_side(baseline), candidate, config.tolerance, baseline, config.candidate
        )
    except (*USER_ERRORS, StoreUnreachable) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    _print(comparison, config.wide)
    if command == "compare":
        try:
            _print_capacity(capacity_rows(store, parse_side(baseline), candidate))
        except USER_ERRORS as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            return 2
    for path in _record(store, comparison, command):
        print(f"wrote {path}")
    if command == "regressions" and comparison.regressions:
        for row in comparison.regressions:
            print(
                f"REGRESSION: {row.model}/{row.workload}/{row.precision}/bs{row.batch_size}/{row.size}: "
                f"throughput x{row.ratio:.3f} {row.interval_text}",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
