"""What the console says of serve runs and their groups (tenants, capacity, density)."""

from __future__ import annotations

from typing import Optional

from runners.contracts import GroupRecord, Result


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def run_line(result: Result) -> str:
    """offered, goodput, latency from the scheduled time, the SLO verdict, failures, warnings."""
    v = result.value
    if v("offered_rate") is None:
        return ""
    serve = result.details.get("serve") or {}
    bounds = serve.get("slo") or {}
    named = {"p99_ms": "p99", "ttft_ms": "TTFT p99", "tpot_ms": "TPOT p99"}
    given = [f"{named[k]} <= {b:g} ms" for k, b in bounds.items() if b is not None and k in named]
    good = f", goodput {v('goodput'):,.1f}/s" if v("goodput") is not None else ""
    if not given:
        verdict = "no SLO given (serve.slo.p99_ms)"
    else:
        verdict = f"SLO {', '.join(given)} {'MET' if serve.get('slo_met') else 'NOT met'}"
    if v("serve_ttft_ms_p50") is not None:
        good += (
            f"; TTFT p50 {_ms(v('serve_ttft_ms_p50'))} p99 {_ms(v('serve_ttft_ms_p99'))}, TPOT p50 "
            f"{_ms(v('serve_tpot_ms_p50'))}, ITL p50 {_ms(v('serve_itl_ms_p50'))} p99 {_ms(v('serve_itl_ms_p99'))}"
        )
    text = (
        f" (offered {v('offered_rate'):,.1f}/s, completed {v('request_throughput'):,.1f}/s{good}; latency from "
        f"scheduled p50 {_ms(v('serve_latency_ms_p50'))} p99 {_ms(v('serve_latency_ms_p99'))} max "
        f"{_ms(v('serve_latency_ms_max'))}, send delay p99 {_ms(v('send_delay_ms_p99'))}; "
        f"{int(v('requests_failed', 0))} failed; {verdict})"
    )
    return text


def warnings(result: Result) -> list[str]:
    return list((result.details.get("serve") or {}).get("warnings") or [])


def group_line(group: GroupRecord) -> Optional[str]:
    v = group.value
    if group.kind == "tenants" and v("tenants_meeting_slo") is not None:
        tenants = group.details.get("tenants") or {}
        infinite = group.details.get("worst_tenant_p99_infinite")
        worst = (
            "unbounded (over 1% of a tenant's requests failed)" if infinite else _ms(v("worst_tenant_latency_ms_p99"))
        )
        return (
            f"{group.id}: {int(v('tenants_meeting_slo'))}/{len(tenants)} tenants met the SLO, aggregate goodput "
            f"{v('aggregate_goodput') or 0:,.1f}/s, worst tenant p99 {worst} "
            f"(alone {_ms(v('alone_latency_ms_p99'))}, inflation "
            + ("unbounded)" if infinite else f"{v('p99_inflation') or float('nan'):.2f}x)")
        )
    if group.kind == "capacity":
        best = v("max_rate_at_slo")
        probes = group.details.get("probes") or []
        at_least = "at least " if group.details.get("at_least") else ""
        found = f"max rate at SLO {at_least}{best:,.2f} requests/s" if best else "no rate tried met the SLO"
        if at_least:
            found += " (no rate tried missed it: raise serve.search_max_runs to find the limit)"
        late = group.details.get("late_probes")
        if late:
            found += f"; UNKNOWN: the load generator could not offer {late} requests/s (serve.generators)"
        return f"{group.id}: {found} ({len(probes)} probes; bracket {group.details.get('bracket')})"
    if group.kind == "interference" and group.details.get("victim_p99_infinite"):
        return (
            f"{group.id}: victim p99 unbounded next to a {group.details.get('aggressor')} aggressor (over 1% of its "
            f"requests failed), {_ms(v('victim_alone_latency_ms_p99'))} alone"
        )
    if group.kind == "interference" and v("p99_inflation") is not None:
        return (
            f"{group.id}: victim p99 {_ms(v('victim_latency_ms_p99'))} next to a {group.details.get('aggressor')} "
            f"aggressor, {_ms(v('victim_alone_latency_ms_p99'))} alone: p99 inflation {v('p99_inflation'):.2f}x"
            + (f", goodput x{v('victim_goodput_ratio'):.2f}" if v("victim_goodput_ratio") is not None else "")
        )
    if group.kind == "density":
        capped = " (at least: every count up to serve.search_max_runs met it)" if group.details.get("at_least") else ""
        return (
            f"{group.id}: density {int(v('density') or 0)} tenants all meeting the SLO at "
            f"{group.details.get('rate')} requests/s each{capped} ({group.details.get('tried')})"
        )
    return None
