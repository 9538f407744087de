"""`python -m runners.analyze compare|regressions|pin-baseline|report` (make compare,
make regressions, make pin-baseline, make report): read recorded runs, never run any."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from runners import compare as comparing
from runners.errors import UsageError, one_line
from runners.stores import Store, default_results_dir, parse_side
from runners.tracking import log_summary

PINNED = "pinned-baseline"
VERDICT_STYLE = {"slower": "red", "faster": "green", "equivalent": "", "inconclusive": "yellow"}


def _print(comparison: comparing.Comparison) -> None:
    out = Console()
    if not out.is_terminal:
        out.width = max(out.width, 180)
    table = Table(title=comparing._title(comparison).replace("`", ""))
    for column in comparing.COLUMNS:
        table.add_column(column)
    for row in comparison.rows:
        table.add_row(*comparing.table_cells(row), style=VERDICT_STYLE[row.verdict])
    out.print(table)
    for line in comparison.missing:
        out.print(f"not paired: {line}")
    if comparison.run_noise_unknown:
        out.print(f"note: {comparing.NOISE_NOTE}")
    if not comparison.rows:
        out.print("no pairs: no (model, workload, precision, batch size, size) has successful runs on both sides")


def _record(store: Store, comparison: comparing.Comparison, kind: str) -> list[Path]:
    paths = comparing.write_tables(comparison, store.results_dir / "tables")
    verdicts = [row.verdict for row in comparison.rows]
    metrics = {"pairs": len(comparison.rows), "missing_pairs": len(comparison.missing),
               **{v: verdicts.count(v) for v in ("slower", "faster", "equivalent", "inconclusive")}}
    name = f"{kind}-{comparison.candidate or 'later'}-vs-{comparison.baseline}".replace(" ", "_")[:250]
    log_summary(name, {"kind": "comparison", "baseline": comparison.baseline, "candidate": comparison.candidate},
                metrics, not (kind == "regressions" and comparison.regressions), store.tracking, store.results_dir,
                tuple(paths))
    return paths


def _baseline(spec: str | None, results_dir: Path) -> str:
    if spec:
        return spec
    pinned = results_dir / PINNED
    if pinned.exists():
        return pinned.read_text().strip()
    raise UsageError("no baseline: pass baseline=\"label=release-2.3\" (or any tags), or pin one with make pin-baseline")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runners.analyze", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("compare", "regressions", "report"):
        p = sub.add_parser(name)
        p.add_argument("--baseline", default="")
        p.add_argument("--candidate", default="")
        p.add_argument("--tolerance", type=float, default=0.02)
    sub.add_parser("pin-baseline").add_argument("--baseline", default="")
    args = parser.parse_args(argv)
    results_dir = default_results_dir()
    try:
        if args.command == "pin-baseline":
            parse_side(args.baseline)
            (results_dir).mkdir(parents=True, exist_ok=True)
            (results_dir / PINNED).write_text(args.baseline + "\n")
            print(f"pinned baseline: {args.baseline} (make regressions compares later runs against it)")
            return 0
        if not 0 <= args.tolerance < 1:
            raise UsageError(f"tolerance must be in [0, 1), got {args.tolerance}")
        baseline = _baseline(args.baseline, results_dir)
        if args.command == "compare" and not args.candidate:
            raise UsageError("compare needs a candidate, e.g. candidate=\"backend=vgpu\"")
        candidate = parse_side(args.candidate) if args.candidate else None
        store = Store(results_dir=results_dir)
        comparison = comparing.compare(store, parse_side(baseline), candidate, args.tolerance, baseline, args.candidate)
        if args.command == "report":
            from runners import report

            path = report.write(store, comparison)
            print(f"report: {path}")
            return 0
    except UsageError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    _print(comparison)
    for path in _record(store, comparison, args.command):
        print(f"wrote {path}")
    if args.command == "regressions" and comparison.regressions:
        for row in comparison.regressions:
            print(f"REGRESSION: {row.model}/{row.workload}/{row.precision}/bs{row.batch_size}/{row.size}: "
                  f"throughput x{row.ratio:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
