"""`make bench-loadgen`: the serve load generator against a null server (the self-test
model's `instant` size, one request per batch), `repeats` rounds in a row: does it sustain
the rate, and how much latency do the generator, the transport and the server loop add?
Reads the rounds' result files; prints one line per round and the medians."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

from runners.contracts import RESULT_FILE, GroupRecord, Result

TARGET_RATE, TARGET_P50_US = 5000.0, 50.0


def rounds(results_dir: Path, group_id: str = "") -> list[Result]:
    """The rounds of a repeats group of the null server: the newest, or the one named."""
    pattern = f"{group_id}.json" if group_id else "dummy-serve-*-repeats*.json"
    groups = sorted((results_dir / "groups").glob(pattern), key=lambda p: p.stat().st_mtime)
    if not groups:
        raise SystemExit(f"no serve repeats group under {results_dir}/groups: run make bench-loadgen")
    group = GroupRecord.load(groups[-1])
    return [Result.load(p) for m in group.members for p in (results_dir / "runs").glob(f"{m.run_id}/{RESULT_FILE}")]


def report(results: list[Result]) -> str:
    lines, p50s, rates = [], [], []
    for i, r in enumerate(results, 1):
        v = r.value
        p50_us, rate = v("serve_latency_ms_p50") * 1e3, v("request_throughput")
        p50s.append(p50_us)
        rates.append(rate)
        lines.append(
            f"round {i}: offered {v('offered_rate'):,.0f}/s, completed {rate:,.0f}/s, "
            f"failed {v('requests_failed'):.0f}; "
            f"latency from scheduled p50 {p50_us:.1f} us p99 {v('serve_latency_ms_p99') * 1e3:.0f} us; "
            f"send delay p50 {v('send_delay_ms_p50') * 1e3:.1f} us p99 {v('send_delay_ms_p99') * 1e3:.0f} us; "
            f"behind {v('generator_behind_share'):.2%}"
        )
    median_p50, median_rate = statistics.median(p50s), statistics.median(rates)
    lines.append(
        f"median over {len(results)} rounds: completed {median_rate:,.0f} requests/s (target >= {TARGET_RATE:,.0f}), "
        f"added latency p50 {median_p50:.1f} us (target <= {TARGET_P50_US:g} us); best round p50 {min(p50s):.1f} us"
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines.append(f"load average (1, 5, 15 min) when reported: {load} on {os.cpu_count()} cores")
    met = median_rate >= 0.99 * TARGET_RATE and median_p50 <= TARGET_P50_US
    lines.append("targets met" if met else "targets NOT met on this machine now (see docs/serving.md)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(rounds(Path(sys.argv[1]).resolve(), *sys.argv[2:3])))
