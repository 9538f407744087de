"""Latency, SLO and goodput from per-request timestamps (seconds from the schedule's time
zero, CLOCK_MONOTONIC). Latency counts from the SCHEDULED time, as MLPerf LoadGen does: a
server that stalls, or a generator that fell behind, shows as latency, never as fewer
requests (no coordinated omission). Latency from the send time is kept next to it, with
the send delay between the two. A request that was rejected, failed or never answered has
no latency: it counts as failed, and as an infinitely late one in the SLO's percentile."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from runners import stats
from runners.contracts import Metric

OK, REJECTED, ERROR, TIMEOUT = "ok", "rejected", "error", "timeout"
BEHIND_MS = 1.0  # a request sent this much after its scheduled time means the generator fell behind
BEHIND_SHARE = 0.01  # ... and more than this share of such requests is worth a warning
# A run whose sends were late by more than serve.max_send_delay_ms for more than this share of
# its requests did not offer the rate it claims: `invalid` (serve_valid 0), never a figure.
LATE_SHARE = 0.01

OFFERED_RATE = Metric("offered_rate", "requests/s", "serve: requests scheduled / the schedule's span")
REQUESTS = Metric("requests", "count", "serve: requests scheduled (every one is sent, answered or counted failed)")
COMPLETED = Metric("requests_completed", "count", "serve: requests answered successfully")
FAILED = Metric("requests_failed", "count", "serve: rejected (server queue full), errors and not answered in time")
REQUEST_THROUGHPUT = Metric("request_throughput", "requests/s", "serve: completed requests / run window")
GOODPUT = Metric("goodput", "requests/s", "serve: completed requests meeting every SLO / run window")
LAT_P50 = Metric("serve_latency_ms_p50", "ms", "serve: completion - scheduled time, median of completed requests")
LAT_P90 = Metric("serve_latency_ms_p90", "ms", "serve: completion - scheduled time, 90th percentile")
LAT_P99 = Metric("serve_latency_ms_p99", "ms", "serve: completion - scheduled time, 99th percentile")
LAT_MAX = Metric("serve_latency_ms_max", "ms", "serve: completion - scheduled time, largest")
SLO_P99 = Metric("slo_latency_ms_p99", "ms", "serve: 99th percentile over ALL requests, failed ones as infinitely late")
SENT_P50 = Metric("sent_latency_ms_p50", "ms", "serve: completion - send time, median (what a closed loop reports)")
SENT_P99 = Metric("sent_latency_ms_p99", "ms", "serve: completion - send time, 99th percentile")
DELAY_P50 = Metric("send_delay_ms_p50", "ms", "serve: send - scheduled time, median")
DELAY_P99 = Metric("send_delay_ms_p99", "ms", "serve: send - scheduled time, 99th percentile")
DELAY_MAX = Metric("send_delay_ms_max", "ms", "serve: send - scheduled time, largest")
QUEUE_P50 = Metric("server_queue_ms_p50", "ms", "serve: received by the server - its batch started, median")
SLO_MET = Metric("slo_met", "bool", "serve: 1 when the run is valid and slo_latency_ms_p99 <= serve.slo.p99_ms")
VALID = Metric(
    "serve_valid",
    "bool",
    "serve: 1 when the schedule lasted serve.min_duration_s with serve.min_requests, its requests were sent on "
    "time (serve.max_send_delay_ms) and no batch raised",
)
TTFT_P50 = Metric("serve_ttft_ms_p50", "ms", "serve, decoders: first token - scheduled time, median")
TTFT_P99 = Metric("serve_ttft_ms_p99", "ms", "serve, decoders: first token - scheduled time, 99th percentile")
TPOT_P50 = Metric("serve_tpot_ms_p50", "ms", "serve, decoders: (latency - TTFT) / (tokens - 1) per request, median")
TPOT_P99 = Metric("serve_tpot_ms_p99", "ms", "serve, decoders: time per output token, 99th percentile")
ITL_P50 = Metric("serve_itl_ms_p50", "ms", "serve, decoders: every gap between a request's tokens, median")
ITL_P99 = Metric("serve_itl_ms_p99", "ms", "serve, decoders: every gap between tokens, 99th percentile")
OUTPUT_TOKENS = Metric("serve_output_tokens_per_s", "tokens/s", "serve, decoders: completed x new_tokens / window")
BEHIND = Metric("generator_behind_share", "ratio", f"serve: share of requests sent > {BEHIND_MS:g} ms late")


@dataclass
class Request:
    id: int
    scheduled: float
    sent: float = math.nan
    received: float = math.nan  # by the server
    started: float = math.nan  # the server's batch holding it began
    first: float = math.nan  # first output (decoders); the completion otherwise
    done: float = math.nan  # the server finished it
    completed: float = math.nan  # the generator received the answer
    status: str = TIMEOUT  # until answered
    held: bool = False  # it waited for a slot under serve.concurrency before it could be sent

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def latency_ms(self) -> float:
        """NaN unless answered successfully: a rejection's quick answer is no latency."""
        return (self.completed - self.scheduled) * 1e3 if self.ok else math.nan

    @property
    def sent_latency_ms(self) -> float:
        return (self.completed - self.sent) * 1e3 if self.ok else math.nan

    @property
    def send_delay_ms(self) -> float:
        return (self.sent - self.scheduled) * 1e3

    @property
    def ttft_ms(self) -> float:
        """Decoders: the first token (made and off the device, in the server) - scheduled time."""
        return (self.first - self.scheduled) * 1e3 if self.ok else math.nan

    def tpot_ms(self, tokens: int) -> float:
        """vLLM's TPOT: (latency - TTFT) / (output tokens - 1)."""
        return (self.completed - self.first) * 1e3 / (tokens - 1) if self.ok and tokens > 1 else math.nan


def p99_counting_failures(result) -> Optional[float]:
    """A serve run's slo_latency_ms_p99, infinite where it is absent because failed requests
    reached the 99th percentile (the result file leaves infinite figures out); None without
    requests."""
    value = result.value(SLO_P99.name)
    if value is None and (result.value(REQUESTS.name) or 0) > 0:
        return math.inf
    return value


def percentile_with_failures(latencies: list[float], failed: int, q: float) -> float:
    """The q-th percentile when `failed` more requests never completed: they rank last, as
    infinitely late, so the percentile is infinite once it reaches them."""
    ordered = sorted(latencies) + [math.inf] * failed
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    if math.isinf(ordered[high]):
        return math.inf
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Verdict:
    metrics: dict[Metric, Optional[float]]
    valid: bool
    why_invalid: str
    slo_met: Optional[bool]  # None: no SLO given
    behind: bool  # the generator fell behind its schedule
    failures: dict[str, int]
    sent_late: bool = False  # beyond serve.max_send_delay_ms: the offered rate is not the one claimed


def summarize(
    requests: list[Request],
    duration_s: float,
    p99_ms: Optional[float],
    min_duration_s: float,
    min_requests: int,
    *,
    max_send_delay_ms: float = math.inf,
    batch_errors: int = 0,  # batches whose run raised (their requests answered as errors)
    ttft_ms: Optional[float] = None,
    tpot_ms: Optional[float] = None,
    tokens: Optional[int] = None,  # decoders: output tokens per request
    itl_ms: Optional[list[float]] = None,  # decoders: every gap between tokens
) -> Verdict:
    # The schedule runs past duration_s until it has serve.min_requests arrivals: its real span.
    duration_s = max([duration_s, *(r.scheduled for r in requests)])
    done = [r for r in requests if r.ok]
    latencies = [r.latency_ms for r in done]
    ttfts = [r.ttft_ms for r in done] if tokens else []
    tpots = [r.tpot_ms(tokens) for r in done] if tokens and tokens > 1 else []
    failed = len(requests) - len(done)
    last = max((r.completed for r in done), default=0.0)
    window = max(duration_s, last)  # to the last completion: an overloaded server drains after the schedule
    sent = [r for r in requests if not math.isnan(r.sent)]
    delays = [r.send_delay_ms for r in sent if not r.held]
    behind_share = sum(d > BEHIND_MS for d in delays) / len(delays) if delays else 0.0
    reasons = []
    if duration_s < min_duration_s:
        reasons.append(f"schedule of {duration_s:g} s < serve.min_duration_s={min_duration_s:g}")
    if len(requests) < min_requests:
        reasons.append(f"{len(requests)} requests < serve.min_requests={min_requests}")
    late = sum(d > max_send_delay_ms for d in delays) / len(delays) if delays else 0.0
    if late > LATE_SHARE:
        reasons.append(
            f"{late:.1%} of requests were sent more than serve.max_send_delay_ms={max_send_delay_ms:g} ms after their "
            f"scheduled time (at most {LATE_SHARE:.0%} may be): the offered rate was not the one scheduled"
        )
    errors = sum(r.status == ERROR for r in requests)
    if batch_errors or errors:
        reasons.append(f"{batch_errors} batch(es) raised: {errors} request(s) answered with an error, counted failed")
    valid = not reasons
    slo_p99 = percentile_with_failures(latencies, failed, 99)
    # Every bound given, at the 99th percentile with the failed requests infinitely late;
    # a request is good when it meets each bound given (vLLM's goodput).
    bounds = [(p99_ms, latencies), (ttft_ms, ttfts), (tpot_ms, tpots)]
    bounds = [(bound, values) for bound, values in bounds if bound is not None]
    slo_met = None
    if bounds:
        slo_met = valid and all(percentile_with_failures(v, failed, 99) <= bound for bound, v in bounds)
    good = None
    if bounds:
        good = sum(all(v[i] <= bound for bound, v in bounds) for i in range(len(done))) / window
    lat = stats.summarize_ms(latencies)
    pct = stats.percentile
    metrics: dict[Metric, Optional[float]] = {
        OFFERED_RATE: len(requests) / duration_s,
        REQUESTS: len(requests),
        COMPLETED: len(done),
        FAILED: failed,
        REQUEST_THROUGHPUT: len(done) / window,
        GOODPUT: good,
        LAT_P50: lat["p50"],
        LAT_P90: lat["p90"],
        LAT_P99: lat["p99"],
        LAT_MAX: lat["max"],
        SLO_P99: slo_p99,
        SENT_P50: pct([r.sent_latency_ms for r in done], 50),
        SENT_P99: pct([r.sent_latency_ms for r in done], 99),
        DELAY_P50: pct([r.send_delay_ms for r in sent], 50),
        DELAY_P99: pct([r.send_delay_ms for r in sent], 99),
        DELAY_MAX: max((r.send_delay_ms for r in sent), default=None),
        QUEUE_P50: pct([(r.started - r.received) * 1e3 for r in done], 50),
        SLO_MET: None if slo_met is None else float(slo_met),
        VALID: float(valid),
        BEHIND: behind_share,
    }
    if tokens:
        metrics.update(
            {
                TTFT_P50: pct(ttfts, 50),
                TTFT_P99: pct(ttfts, 99),
                TPOT_P50: pct(tpots, 50) if tpots else None,
                TPOT_P99: pct(tpots, 99) if tpots else None,
                ITL_P50: pct(itl_ms, 50) if itl_ms else None,
                ITL_P99: pct(itl_ms, 99) if itl_ms else None,
                OUTPUT_TOKENS: len(done) * tokens / window,
            }
        )
    failures = {s: sum(r.status == s for r in requests) for s in (REJECTED, ERROR, TIMEOUT)}
    return Verdict(
        metrics, valid, "; ".join(reasons), slo_met, behind_share > BEHIND_SHARE, failures, late > LATE_SHARE
    )
