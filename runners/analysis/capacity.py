"""`make compare` for serve capacity searches: the newest "max rate at SLO" of each side,
paired like with like (every setting of the search's probes that changes the work, as
`make compare` pairs runs: work_settings, less the rate the search varies), and their ratio. Read from the searches'
MLflow group runs (tags.kind = capacity) and one probe of each (its params). A search that
never found a failing rate gives a lower bound ("at least"), never compared as if measured:
the ratio is then a bound too, or unknown when both sides are bounds."""

from __future__ import annotations

from dataclasses import dataclass

from runners.tracking.read import TAG_KEYS, Run, Store, clause, normalized_tags

# A search varies these: every other setting that changes the work must match (work_settings).
SEARCH_KNOBS = frozenset({"serve.rate", "serve.search"})


@dataclass
class CapacityRow:
    model: str
    size: str
    settings: str
    baseline_rate: float
    candidate_rate: float
    baseline_group: str
    candidate_group: str
    baseline_at_least: bool = False  # the search never found a failing rate: a lower bound
    candidate_at_least: bool = False

    @property
    def ratio(self) -> float:
        """candidate / baseline; NaN when both are lower bounds (nothing bounds their ratio)."""
        if not self.baseline_rate or (self.baseline_at_least and self.candidate_at_least):
            return float("nan")
        return self.candidate_rate / self.baseline_rate

    @property
    def baseline_text(self) -> str:
        return ("at least " if self.baseline_at_least else "") + f"{self.baseline_rate:,.2f}"

    @property
    def candidate_text(self) -> str:
        return ("at least " if self.candidate_at_least else "") + f"{self.candidate_rate:,.2f}"

    @property
    def ratio_text(self) -> str:
        if self.baseline_at_least and self.candidate_at_least:
            return "unknown: both are lower bounds"
        if self.candidate_at_least:  # the candidate could only be higher
            return f">= {self.ratio:.3f}"
        if self.baseline_at_least:  # the baseline could only be higher
            return f"<= {self.ratio:.3f}"
        return f"{self.ratio:.3f}"


def _searches(store: Store, filters: dict[str, str]) -> dict[tuple, tuple[str, float, bool]]:
    """(model, size, settings) -> (group id, max rate at SLO, whether it is a lower bound) of
    the newest search of a side."""
    tags = {k: v for k, v in filters.items() if k in TAG_KEYS or k.startswith("tags.")}
    params = {k.removeprefix("params."): v for k, v in filters.items() if k not in tags}
    clauses = [clause(k, v) for k, v in tags.items()] + ["tags.kind = 'capacity'", "tags.status = 'success'"]
    found: dict[tuple, tuple[str, float, bool]] = {}
    for group in store.search(" and ".join(clauses)):  # newest first
        if "max_rate_at_slo" not in group.data.metrics:
            continue
        probes = store.search(f"tags.mlflow.parentRunId = '{group.info.run_id}'")
        if not probes:
            continue
        probe = Run(probes[0].info.run_id, normalized_tags(probes[0].data.tags), dict(probes[0].data.params), {}, 0)
        if any(probe.params.get(k) != v for k, v in params.items()):
            continue
        settings = probe.work(frozenset(filters) | SEARCH_KNOBS)
        key = (group.data.tags.get("model", "?"), group.data.tags.get("model_size", "?"), settings)
        metrics = group.data.metrics
        found.setdefault(
            key,
            (
                group.data.tags.get("group", group.info.run_id),
                metrics["max_rate_at_slo"],
                metrics.get("max_rate_at_slo_is_lower_bound") == 1,
            ),
        )
    return found


def capacity_rows(store: Store, baseline: dict[str, str], candidate: dict[str, str]) -> list[CapacityRow]:
    base, cand = _searches(store, baseline), _searches(store, candidate)
    rows = []
    for key in sorted(base.keys() & cand.keys()):
        model, size, settings = key
        shown = [(k, v) for k, v in settings if k.startswith("serve.") and v not in ("", "None")]
        text = " ".join(f"{k.removeprefix('serve.')}={v}" for k, v in shown)
        (b_group, b_rate, b_bound), (c_group, c_rate, c_bound) = base[key], cand[key]
        rows.append(CapacityRow(model, size, text, b_rate, c_rate, b_group, c_group, b_bound, c_bound))
    return rows


def _cell(value) -> str:
    return "-" if value is None else f"{value:,.2f}"


def report_section(store: Store, comparisons: list) -> str:
    """The report's serving part: max rate at SLO per pair of sides, then the serve runs of
    each comparison (goodput, p99 from the scheduled time, SLO verdict), baseline | candidate."""
    import html

    from runners.tracking.read import parse_side

    parts = []
    for c in comparisons:
        capacity = capacity_rows(store, parse_side(c.baseline), parse_side(c.candidate)) if c.candidate else []
        rows = [[r.model, r.size, r.settings, r.baseline_text, r.candidate_text, r.ratio_text] for r in capacity]
        for row in (r for r in c.rows if r.workload == "serve"):
            b, k = store.run(row.baseline_run_id).metrics, store.run(row.candidate_run_id).metrics
            rows.append(
                [
                    row.model,
                    row.size,
                    f"one run: goodput {_cell(b.get('goodput'))} | {_cell(k.get('goodput'))} requests/s, p99 from "
                    f"scheduled {_cell(b.get('serve_latency_ms_p99'))} | {_cell(k.get('serve_latency_ms_p99'))} ms, "
                    f"SLO met {b.get('slo_met')} | {k.get('slo_met')}",
                    _cell(b.get("offered_rate")),
                    _cell(k.get("offered_rate")),
                    "",
                ]
            )
        if rows:
            head = "".join(f"<th>{h}</th>" for h in ("model", "size", "what", "baseline", "candidate", "ratio"))
            body = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rows)
            parts.append(
                f"<h3>{html.escape(c.candidate)} vs {html.escape(c.baseline)}</h3><table><tr>{head}</tr>{body}</table>"
            )
    if not parts:
        return ""
    return "<h2>Serving: max rate at SLO (requests/s) and serve runs</h2>" + "".join(parts)
