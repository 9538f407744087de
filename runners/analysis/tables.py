"""A comparison as tables: console cells, Markdown, CSV and HTML files."""

from __future__ import annotations

import csv
import html
import io
import time
from dataclasses import asdict
from pathlib import Path

from runners.analysis.compare import Comparison, MicroRow, Row

COLUMNS = (
    "model",
    "workload",
    "precision",
    "batch",
    "size",
    "baseline /s",
    "candidate /s",
    "ratio [95% CI]",
    "p50 ratio",
    "p99 ratio",
    "start-up ratio",
    "J/sample ratio",
    "memory diff MiB",
    "overhead % measured",
    "overhead % estimated",
    "verdict",
    "runs b/c",
    "run-to-run CV b/c",
    "noise b/c",
    "runs to decide",
    "why no verdict",
    "settings",
)
# The console's default: what answers "slower or not, and how sure", within 120 columns.
COMPACT_COLUMNS = ("pair", "ratio [95% CI]", "verdict", "runs b/c", "p99 ratio", "note")
MICRO_COLUMNS = ("microbenchmark", "baseline", "candidate", "ratio", "")


def _ratio(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"  # nan: a side lacks the figure


def interval_cell(row: Row) -> str:
    """The ratio and its interval; only the ratio where no verdict may rest on the interval (its
    reason is in the row)."""
    return f"{row.ratio:.3f} {row.interval_text}"


def table_cells(row: Row) -> list[str]:
    return [
        row.model,
        row.workload,
        row.precision,
        row.batch_size,
        row.size,
        f"{row.baseline_throughput:.2f}",
        f"{row.candidate_throughput:.2f}",
        interval_cell(row),
        _ratio(row.p50_ratio),
        _ratio(row.p99_ratio),
        _ratio(row.startup_ratio),
        _ratio(row.energy_ratio),
        "-" if row.memory_diff_mb != row.memory_diff_mb else f"{row.memory_diff_mb:+.1f}",
        f"{row.overhead_pct:+.1f}",
        "-" if row.estimated_overhead_pct is None else f"{row.estimated_overhead_pct:+.1f}",
        row.verdict,
        f"{row.baseline_runs}/{row.candidate_runs}",
        "/".join(
            "unknown" if cv is None else f"{cv:.1%} (n={n})"
            for cv, n in (
                (row.baseline_run_cv, row.baseline_run_cv_runs),
                (row.candidate_run_cv, row.candidate_run_cv_runs),
            )
        ),
        row.noise,
        "-" if row.runs_to_decide is None else str(row.runs_to_decide),
        row.reason or "-",
        row.settings,
    ]


def compact_cells(row: Row) -> list[str]:
    note = row.reason or (f"~{row.runs_to_decide} runs/side to decide" if row.runs_to_decide else "")
    return [
        f"{row.model}/{row.workload}/{row.precision}/bs{row.batch_size}/{row.size}",
        interval_cell(row),
        row.verdict,
        f"{row.baseline_runs}/{row.candidate_runs}",
        _ratio(row.p99_ratio),
        note,
    ]


NOISE_NOTE = (
    "no verdict where a side has one run and no measured run-to-run variation: one run's step "
    "noise says nothing of how the next run would differ, and called identical configurations "
    "different. Compare runs that alternated in time: make ab baseline=... candidate=... repeats=N."
)


def micro_cells(row: MicroRow) -> list[str]:
    return [row.metric, f"{row.baseline:.4g}", f"{row.candidate:.4g}", f"{row.ratio:.3f}", "worse" if row.worse else ""]


def title(comparison: Comparison) -> str:
    return (
        f"candidate `{comparison.candidate or 'later runs'}` vs baseline `{comparison.baseline}` "
        f"(tolerance {comparison.tolerance:.0%})"
    )


def to_markdown(comparison: Comparison) -> str:
    lines = [f"# {title(comparison)}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_cells(row)) + " |" for row in comparison.rows]
    if comparison.missing:
        lines += ["", "Not paired (present on one side only):", *[f"- {m}" for m in comparison.missing]]
    if comparison.invalid:
        lines += ["", "Left out, invalid (the layer did not engage):", *[f"- {m}" for m in comparison.invalid]]
    if comparison.run_noise_unknown:
        lines += ["", f"Note: {NOISE_NOTE}"]
    if comparison.micro:
        lines += [
            "",
            "## Microbenchmarks",
            "",
            "| " + " | ".join(MICRO_COLUMNS) + " |",
            "|" + "---|" * len(MICRO_COLUMNS),
        ]
        lines += ["| " + " | ".join(micro_cells(row)) + " |" for row in comparison.micro]
    return "\n".join(lines) + "\n"


def to_csv(comparison: Comparison) -> str:
    out = io.StringIO()
    fields = (
        list(asdict(comparison.rows[0]).keys())
        if comparison.rows
        else [f.name for f in Row.__dataclass_fields__.values()]
    )
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for row in comparison.rows:
        writer.writerow(asdict(row))
    return out.getvalue()


def to_html(comparison: Comparison) -> str:
    colors = {"slower": "#fdd", "faster": "#dfd", "equivalent": "#fff", "inconclusive": "#ffd"}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        f"<tr style='background:{colors[row.verdict]}'>"
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in table_cells(row))
        + "</tr>"
        for row in comparison.rows
    )
    missing = "".join(f"<li>{html.escape(m)}</li>" for m in comparison.missing)
    invalid = "".join(f"<li>{html.escape(m)}</li>" for m in comparison.invalid)
    micro = ""
    if comparison.micro:
        micro = (
            "<h2>Microbenchmarks</h2><table><tr>"
            + "".join(f"<th>{c}</th>" for c in MICRO_COLUMNS)
            + "</tr>"
            + "".join(
                "<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in micro_cells(r)) + "</tr>"
                for r in comparison.micro
            )
            + "</table>"
        )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>vgpu-bench comparison</title>"
        f"<style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;"
        f"padding:4px 8px;text-align:right}}</style></head><body><h1>{html.escape(title(comparison))}</h1>"
        f"<table><tr>{head}</tr>{body}</table>"
        + (f"<p>Not paired (present on one side only):</p><ul>{missing}</ul>" if missing else "")
        + (f"<p>Left out, invalid (the layer did not engage):</p><ul>{invalid}</ul>" if invalid else "")
        + (f"<p>Note: {html.escape(NOISE_NOTE)}</p>" if comparison.run_noise_unknown else "")
        + micro
        + "</body></html>"
    )


def write_tables(comparison: Comparison, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    paths = []
    for suffix, text in (
        (".md", to_markdown(comparison)),
        (".csv", to_csv(comparison)),
        (".html", to_html(comparison)),
    ):
        path = stem.with_suffix(suffix)
        path.write_text(text)
        paths.append(path)
    return paths
