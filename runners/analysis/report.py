"""`make report`: one self-contained HTML page (plots embedded as PNG) comparing a
baseline and a candidate: the table, engagement and parity per pair, throughput,
latency distributions, memory, overhead sorted with its interval, parity verdicts, and
what differs between the two sides' environment fingerprints."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to PNG
import matplotlib.pyplot as plt  # noqa: E402

from runners.analysis import capacity, sweep_view  # noqa: E402
from runners.analysis.compare import Comparison  # noqa: E402
from runners.analysis.tables import COLUMNS, NOISE_NOTE, table_cells, title  # noqa: E402
from runners.config import to_plain  # noqa: E402
from runners.tracking.read import Store  # noqa: E402

BASE_COLOR, CAND_COLOR = "#4c72b0", "#dd8452"


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _labels(comparison: Comparison) -> list[str]:
    return [f"{r.model}/{r.workload}\n{r.precision} bs{r.batch_size} {r.size}" for r in comparison.rows]


def _bars(comparison: Comparison, base: list[float], cand: list[float], ylabel: str, title: str) -> str:
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(base)), 4))
    xs = range(len(base))
    ax.bar([x - 0.2 for x in xs], base, 0.4, label="baseline", color=BASE_COLOR)
    ax.bar([x + 0.2 for x in xs], cand, 0.4, label="candidate", color=CAND_COLOR)
    ax.set_xticks(list(xs), _labels(comparison), fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def _latency(store: Store, comparison: Comparison) -> str:
    data, ticks = [], []
    for row, label in zip(comparison.rows, _labels(comparison)):
        for side, run_id in (("b", row.baseline_run_id), ("c", row.candidate_run_id)):
            data.append(store.result(store.run(run_id)).measurement.step_times_ms)
            ticks.append(f"{label}\n{'baseline' if side == 'b' else 'candidate'}")
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(data)), 4))
    boxes = ax.boxplot(data, patch_artist=True, showfliers=True)
    for i, patch in enumerate(boxes["boxes"]):
        patch.set_facecolor(BASE_COLOR if i % 2 == 0 else CAND_COLOR)
    ax.set_xticks(range(1, len(ticks) + 1), ticks, fontsize=7)
    ax.set_ylabel("step time (ms)")
    ax.set_title("Latency distribution per step")
    return _png(fig)


def _overhead(comparison: Comparison) -> str:
    """Measured overhead per pair with its interval, largest first."""
    comparison = dataclasses.replace(comparison, rows=sorted(comparison.rows, key=lambda r: -r.overhead_pct))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(comparison.rows)), 4))
    values = [r.overhead_pct for r in comparison.rows]
    nan = float("nan")  # no whisker where no interval holds
    errors = [
        [nan if r.ci_low is None else (r.ratio - r.ci_low) * 100 for r in comparison.rows],
        [nan if r.ci_high is None else (r.ci_high - r.ratio) * 100 for r in comparison.rows],
    ]
    # overhead = (1 - ratio): the interval flips
    ax.bar(
        range(len(values)),
        values,
        yerr=[errors[1], errors[0]],
        capsize=4,
        color=[
            "#c44e52" if r.verdict == "slower" else "#55a868" if r.verdict == "faster" else "#999"
            for r in comparison.rows
        ],
    )
    estimated = [
        (i, r.estimated_overhead_pct) for i, r in enumerate(comparison.rows) if r.estimated_overhead_pct is not None
    ]
    if estimated:  # what the profile and the microbenchmarks predict, beside what was measured
        ax.scatter(
            [i for i, _ in estimated],
            [v for _, v in estimated],
            marker="D",
            color="black",
            zorder=3,
            label="estimated from profile + microbenchmarks",
        )
        ax.legend()
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(values)), _labels(comparison), fontsize=8)
    ax.set_ylabel("overhead % (candidate slower than baseline)")
    ax.set_title("Measured overhead with 95% confidence interval (none where the table gives a reason)")
    return _png(fig)


def _parity_rows(store: Store) -> list[list[str]]:
    runs = store.client.search_runs(
        [store.experiment_id],
        filter_string="tags.kind = 'parity'",
        order_by=["attributes.start_time DESC"],
        max_results=200,
    )
    return [
        [r.data.tags.get(k, "") for k in ("model", "baseline", "candidate", "precision", "verdict")]
        + [f"{r.data.metrics.get('outputs_max_abs_err', float('nan')):.3g}"]
        for r in runs
    ]


def _flat(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): json.dumps(value) if isinstance(value, list) else str(value)}


def _fingerprint_differences(store: Store, baseline_id: str, candidate_id: str) -> list[list[str]]:
    """What differs between the two sides' fingerprints (backend, device, environment), key by
    key; what is alike is not repeated."""
    sides = []
    for run_id in (baseline_id, candidate_id):
        result = store.result(store.run(run_id))
        sides.append(
            _flat(to_plain({"backend": result.backend, "device": result.device, "environment": result.environment}))
        )
    keys = sorted(set(sides[0]) | set(sides[1]))
    return [[k, sides[0].get(k, "-"), sides[1].get(k, "-")] for k in keys if sides[0].get(k) != sides[1].get(k)]


def _status(store: Store, comparison: Comparison) -> list[list[str]]:
    """Per pair: whether each side's layer engaged, and the latest parity verdict of its model."""
    verdicts = {row[0]: row[4] for row in reversed(_parity_rows(store))}  # the newest wins
    rows = []
    for r in comparison.rows:
        engaged = []
        for run_id in (r.baseline_run_id, r.candidate_run_id):
            evidence = store.result(store.run(run_id)).evidence
            engaged.append(evidence.verdict if evidence else "no evidence recorded")
        rows.append(
            [
                f"{r.model}/{r.workload}/{r.precision}/bs{r.batch_size}/{r.size}",
                *engaged,
                verdicts.get(r.model, "not checked"),
            ]
        )
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _details(store: Store, comparison: Comparison) -> str:
    """One backend pair: its table, status, plots and fingerprint differences."""
    rows = comparison.rows
    plots = []
    if rows:
        plots = [
            (
                "Throughput",
                _bars(
                    comparison,
                    [r.baseline_throughput for r in rows],
                    [r.candidate_throughput for r in rows],
                    "samples/s",
                    "Throughput, baseline vs candidate",
                ),
            ),
            ("Latency", _latency(store, comparison)),
            ("Memory", _memory(store, comparison)),
            ("Overhead", _overhead(comparison)),
        ]
    figures = "".join(
        f"<h2>{name}</h2><img class='plot' alt='{name}' src='data:image/png;base64,{data}'>" for name, data in plots
    )
    fingerprints = status = ""
    if rows:
        differences = _fingerprint_differences(store, rows[0].baseline_run_id, rows[0].candidate_run_id)
        fingerprints = (
            "<p>What differs between the sides (first pair's runs; equal entries are left out):</p>"
            + _table(["fingerprint", "baseline", "candidate"], differences)
            if differences
            else "<p>The two sides' fingerprints are identical.</p>"
        )
        status = _table(["pair", "baseline engagement", "candidate engagement", "parity"], _status(store, comparison))
    missing = "".join(f"<li>{html.escape(m)}</li>" for m in comparison.missing)
    return (
        f"<section><h2>{html.escape(title(comparison))}</h2>"
        + _table(list(COLUMNS), [table_cells(r) for r in rows])
        + (f"<p>Not paired:</p><ul>{missing}</ul>" if missing else "")
        + (f"<p>Note: {html.escape(NOISE_NOTE)}</p>" if comparison.run_noise_unknown else "")
        + "<h2>Engagement and parity per pair</h2>"
        + status
        + figures
        + "<h2>Environment fingerprints</h2>"
        + fingerprints
        + "</section>"
    )


def render(store: Store, comparisons: list[Comparison]) -> str:
    """The sweep first (overhead by pair for each backend pair, the ratio heat map), then each
    backend pair in detail, then the parity checks recorded."""
    parity = _parity_rows(store)
    parity_html = (
        _table(["model", "baseline", "candidate", "precision", "verdict", "outputs max abs err"], parity)
        if parity
        else "<p>No parity checks recorded (make parity).</p>"
    )
    overview = "".join(
        f"<h3>{html.escape(c.candidate)} vs {html.escape(c.baseline)}</h3>{sweep_view.overhead_chart(c)}"
        for c in comparisons
    )
    # The page reports on itself how many plots decoded, so a headless browser can check them.
    check = (
        "<script>window.addEventListener('load',()=>{const i=[...document.querySelectorAll('img.plot')];"
        "document.body.dataset.plotsTotal=i.length;"
        "document.body.dataset.plotsRendered=i.filter(x=>x.complete&&x.naturalWidth>0).length;});</script>"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>vgpu-bench report</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;"
        "padding:3px 8px}img{max-width:100%}.sides{display:flex;gap:2em}pre{font-size:11px;background:#f6f6f6}"
        ".heat td{text-align:right;font-variant-numeric:tabular-nums}"
        f"</style></head><body><h1>vgpu-bench report</h1><p>baseline {html.escape(comparisons[0].baseline)}, "
        f"{len(comparisons)} candidate side(s), generated {time.strftime('%Y-%m-%d %H:%M:%S')}. "
        "Hover a bar or a cell for its values.</p>"
        "<h2>Overhead by pair (95% interval), largest first</h2>" + overview
        + "<h2>Throughput ratio by pair and candidate</h2>" + sweep_view.heat_map(comparisons)
        + capacity.report_section(store, comparisons)
        + "".join(_details(store, c) for c in comparisons)
        + "<h2>Numerical parity</h2>" + parity_html
        + check
        + "</body></html>"
    )  # fmt: skip


def _memory(store: Store, comparison: Comparison) -> str:
    base, cand = [], []
    for row in comparison.rows:
        for values, run_id in ((base, row.baseline_run_id), (cand, row.candidate_run_id)):
            values.append(store.run(run_id).metrics.get("memory_peak_mb", 0.0))
    return _bars(comparison, base, cand, "MiB (peak; source in the result files)", "Peak memory")


def write(store: Store, comparisons: list[Comparison]) -> Path:
    out = store.results_dir / "reports"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"report-{time.strftime('%Y%m%d-%H%M%S')}.html"
    path.write_text(render(store, comparisons))
    return path
