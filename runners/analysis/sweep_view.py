"""The report's view of a whole sweep: overhead by pair with its interval, sorted, for each
backend pair; and a pairs x candidates heat map of throughput ratios. Inline SVG and HTML
with native hover (each mark's <title>) and its value in a data attribute, so the page is
one file, needs no network and no script library, and a test can find the plotted values."""

from __future__ import annotations

import html

from runners.analysis.compare import Comparison, Row

WIDTH, BAR, LABEL = 720, 22, 250


def pair_label(row: Row) -> str:
    return f"{row.model}/{row.workload}/{row.precision}/bs{row.batch_size}/{row.size}"


def _color(row: Row) -> str:
    return {"slower": "#c44e52", "faster": "#55a868"}.get(row.verdict, "#8c8c8c")


def overhead_chart(comparison: Comparison) -> str:
    """Measured overhead % per pair (candidate slower than baseline), largest first, with its
    95% interval as a whisker where one holds; zero is marked."""
    rows = sorted(comparison.rows, key=lambda r: -r.overhead_pct)
    if not rows:
        return "<p>No pairs.</p>"
    shown = [r for r in rows if r.ci_low is not None]
    spans = [(1 - r.ci_high) * 100 for r in shown] + [(1 - r.ci_low) * 100 for r in shown]
    spans += [r.overhead_pct for r in rows] + [0.0]
    low, high = min(spans), max(spans)
    pad = (high - low) * 0.05 or 1.0
    low, high = low - pad, high + pad
    plot = WIDTH - LABEL - 20

    def x(value: float) -> float:
        return LABEL + (value - low) / (high - low) * plot

    height = BAR * len(rows) + 30
    parts = [f"<svg class='chart' width='{WIDTH}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"]
    parts.append(f"<line x1='{x(0):.1f}' x2='{x(0):.1f}' y1='0' y2='{height - 20}' stroke='black'/>")
    for i, r in enumerate(rows):
        y = i * BAR + 4
        left, right = sorted((x(0), x(r.overhead_pct)))
        whisker, interval = "", f"none: {r.reason}"
        if r.ci_low is not None:
            lo, hi = (1 - r.ci_high) * 100, (1 - r.ci_low) * 100
            interval = f"[{lo:+.1f}, {hi:+.1f}]"
            whisker = (
                f"<line x1='{x(lo):.1f}' x2='{x(hi):.1f}' y1='{y + 7}' y2='{y + 7}' stroke='black'/>"
                f"<line x1='{x(lo):.1f}' x2='{x(lo):.1f}' y1='{y + 2}' y2='{y + 12}' stroke='black'/>"
                f"<line x1='{x(hi):.1f}' x2='{x(hi):.1f}' y1='{y + 2}' y2='{y + 12}' stroke='black'/>"
            )
        tip = f"{pair_label(r)}: overhead {r.overhead_pct:+.1f}%, interval {interval}, {r.verdict}"
        parts.append(
            f"<g class='bar' data-pair='{html.escape(pair_label(r))}' data-overhead='{r.overhead_pct:.2f}' "
            f"data-interval='{html.escape(interval)}'><title>{html.escape(tip)}</title>"
            f"<text x='{LABEL - 6}' y='{y + 14}' text-anchor='end' font-size='11'>{html.escape(pair_label(r))}</text>"
            f"<rect x='{left:.1f}' y='{y}' width='{max(right - left, 1):.1f}' height='{BAR - 8}' fill='{_color(r)}'/>"
            f"{whisker}</g>"
        )
    parts.append(
        f"<text x='{LABEL}' y='{height - 4}' font-size='11'>{low:+.1f}%</text>"
        f"<text x='{WIDTH - 20}' y='{height - 4}' font-size='11' text-anchor='end'>{high:+.1f}%</text></svg>"
    )
    return "".join(parts)


def _cell_color(ratio: float) -> str:
    """Red below 1, green above, white at 1; full strength at a factor of 2 either way."""
    import math

    strength = min(1.0, abs(math.log2(ratio))) if ratio > 0 else 1.0
    fade = int(255 * (1 - strength))
    return f"rgb(255,{fade},{fade})" if ratio < 1 else f"rgb({fade},255,{fade})"


def heat_map(comparisons: list[Comparison]) -> str:
    """Pairs x candidate sides: each cell the candidate / baseline throughput ratio."""
    pairs = sorted({pair_label(r) for c in comparisons for r in c.rows})
    if not pairs:
        return "<p>No pairs.</p>"
    head = "".join(f"<th>{html.escape(c.candidate)}</th>" for c in comparisons)
    body = []
    for pair in pairs:
        cells = []
        for comparison in comparisons:
            row = next((r for r in comparison.rows if pair_label(r) == pair), None)
            if row is None:
                cells.append("<td>-</td>")
                continue
            tip = f"{pair}, {comparison.candidate}: x{row.ratio:.3f} {row.interval_text} {row.verdict}"
            cells.append(
                f"<td class='cell' data-ratio='{row.ratio:.3f}' title='{html.escape(tip)}' "
                f"style='background:{_cell_color(row.ratio)}'>{row.ratio:.3f}</td>"
            )
        body.append(f"<tr><th>{html.escape(pair)}</th>{''.join(cells)}</tr>")
    baseline = html.escape(comparisons[0].baseline)
    return f"<table class='heat'><tr><th>pair \\ candidate (vs {baseline})</th>{head}</tr>{''.join(body)}</table>"
