"""workload=serve: the arrival schedule, the SLO and goodput arithmetic, the searches (on
synthetic data), and coordinated omission through the real server loop and generator."""

import math
import threading
import time

import pytest

from runners.config import Search, ServeConfig, SloConfig
from runners.loadgen.generator import Spec
from runners.loadgen.generator import run as generate
from runners.parent.search import find_max_count, find_max_rate
from runners.serving import schedule, slo, wire
from runners.serving.slo import Request
from runners.worker import server


def test_the_schedule_is_seeded_and_reproducible():
    a = schedule.arrivals(50, 20, seed=3)
    assert a == schedule.arrivals(50, 20, seed=3)
    assert a != schedule.arrivals(50, 20, seed=4)
    assert a != schedule.arrivals(50, 20, seed=3, stream=1)  # each tenant its own stream
    assert all(0 <= t < 20 for t in a) and a == sorted(a)


def test_poisson_has_the_mean_rate_and_exponential_gaps():
    rate, duration = 200.0, 100.0
    times = schedule.arrivals(rate, duration, seed=0)
    assert len(times) / duration == pytest.approx(rate, rel=0.03)  # sd of the count: sqrt(20000) = 0.7%
    gaps = sorted(b - a for a, b in zip([0.0, *times], times))
    # Kolmogorov-Smirnov against the exponential of that rate: D below the 1% critical value.
    n = len(gaps)
    d = max(max((i + 1) / n - (1 - math.exp(-rate * g)), (1 - math.exp(-rate * g)) - i / n) for i, g in enumerate(gaps))
    assert d < 1.63 / math.sqrt(n)
    # ... while gaps of the same mean from a gamma of shape 4 fail that test
    bursty = schedule.arrivals(rate, duration, seed=0, burstiness=4.0)
    g4 = sorted(b - a for a, b in zip([0.0, *bursty], bursty))
    m = len(g4)
    d4 = max(abs((i + 1) / m - (1 - math.exp(-rate * g))) for i, g in enumerate(g4))
    assert d4 > 1.63 / math.sqrt(m)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_keeps_the_rate_and_its_burstiness_sets_the_spread(burstiness):
    times = schedule.arrivals(100, 200, seed=1, burstiness=burstiness)
    gaps = [b - a for a, b in zip([0.0, *times], times)]
    mean = sum(gaps) / len(gaps)
    cv = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps)) / mean
    assert 1 / mean == pytest.approx(100, rel=0.05)
    assert cv == pytest.approx(1 / math.sqrt(burstiness), rel=0.1)  # gamma: CV = 1/sqrt(shape)


def test_the_schedule_goes_on_until_its_minimum_count():
    times = schedule.arrivals(2, 5, seed=0, min_count=40)  # ~10 in 5 s: extended to 40, about 20 s
    assert len(times) == 40 and times[-1] > 5
    assert schedule.arrivals(2, 5, seed=0, min_count=40)[:5] == schedule.arrivals(2, 5, seed=0)[:5]
    assert len(schedule.arrivals(100, 5, seed=0, min_count=40)) > 400  # already enough: the duration decides


def test_generators_share_the_schedule_without_overlap():
    times = schedule.arrivals(100, 5, seed=0)
    shares = [schedule.share(times, 3, i) for i in range(3)]
    assert sorted(pair for s in shares for pair in s) == list(enumerate(times))


def _request(i, latency_ms, status=slo.OK, delay_ms=0.0):
    scheduled = i * 0.01
    sent = scheduled + delay_ms / 1e3
    done = scheduled + latency_ms / 1e3 if status == slo.OK else math.nan
    return Request(i, scheduled, sent, sent, sent, done, done, done, status)


def test_slo_goodput_and_validity_on_synthetic_timestamps():
    # 1000 requests over 10 s: 970 at 10 ms, 20 at 500 ms, 10 failed
    reqs = [_request(i, 10.0) for i in range(970)]
    reqs += [_request(970 + i, 500.0) for i in range(20)]
    reqs += [_request(990 + i, 0, status=slo.TIMEOUT) for i in range(10)]
    v = slo.summarize(reqs, duration_s=10.0, p99_ms=100.0, min_duration_s=5, min_requests=100)
    m = {metric.name: value for metric, value in v.metrics.items()}
    assert m["requests"] == 1000 and m["requests_completed"] == 990 and m["requests_failed"] == 10
    window = max(10.0, max(r.completed for r in reqs if r.ok))  # to the last completion: 9.89 s + 500 ms
    assert m["goodput"] == pytest.approx(970 / window) and window == pytest.approx(10.39)  # those within 100 ms
    assert m["offered_rate"] == 100.0
    assert math.isinf(m["slo_latency_ms_p99"])  # the failed ones rank last, infinitely late
    assert m["serve_latency_ms_p99"] == pytest.approx(500.0)  # over the completed ones
    assert v.slo_met is False and v.valid and v.failures["timeout"] == 10
    # without the failures, and a bound above the 500 ms tail: met, every completed request good
    ok = slo.summarize(reqs[:990], 10.0, 600.0, 5, 100)
    assert ok.slo_met is True and ok.metrics[slo.GOODPUT] == pytest.approx(990 / window)
    short = slo.summarize(reqs[:50], 2.0, 600.0, 5, 100)
    assert not short.valid and short.slo_met is False
    assert "serve.min_duration_s" in short.why_invalid and "serve.min_requests" in short.why_invalid


def test_percentile_with_failures_is_infinite_only_when_it_reaches_them():
    lat = [float(i) for i in range(1, 100)]  # 99 completed, then one failure
    assert slo.percentile_with_failures(lat, 1, 50) == pytest.approx(50.5)
    assert math.isinf(slo.percentile_with_failures(lat, 1, 100))
    assert slo.percentile_with_failures(lat, 0, 99) == pytest.approx(98.02)


def test_a_late_generator_is_detected_but_held_requests_are_not_its_fault():
    late = [_request(i, 20.0, delay_ms=5.0) for i in range(100)]
    assert slo.summarize(late, 1.0, None, 0, 1).behind
    for r in late:
        r.held = True  # waited for a serve.concurrency slot
    assert not slo.summarize(late, 1.0, None, 0, 1).behind
    assert slo.summarize(late, 1.0, None, 0, 1).metrics[slo.GOODPUT] is None  # no SLO, no goodput


def test_capacity_search_converges_on_a_server_of_known_capacity():
    capacity = 137.0
    low, high, history = find_max_rate(lambda rate: rate <= capacity, start=10, tolerance=0.05, max_probes=20)
    assert low <= capacity < high and (high - low) / low <= 0.05
    assert [r for r, _ in history][:5] == [10, 20, 40, 80, 160]  # doubles, then bisects
    low, high, _ = find_max_rate(lambda rate: rate <= capacity, start=5000, tolerance=0.05, max_probes=20)
    assert low <= capacity < high and (high - low) / low <= 0.05  # halves down from above
    low, _, history = find_max_rate(lambda rate: False, start=10, tolerance=0.05, max_probes=4)
    assert low is None and len(history) == 4


def test_a_resumed_search_takes_the_same_path():
    first, second = [], []
    find_max_rate(lambda r: first.append(r) or r <= 77, 10, 0.1, 10)
    find_max_rate(lambda r: second.append(r) or r <= 77, 10, 0.1, 10)
    assert first == second  # rounded rates: the same probe configurations, found again with resume=true


def test_density_stops_at_the_first_count_that_fails():
    assert find_max_count(lambda n: n <= 3, 8) == (3, [(1, True), (2, True), (3, True), (4, False)])
    assert find_max_count(lambda n: True, 2)[0] == 2
    assert find_max_count(lambda n: False, 5)[0] == 0


def test_serve_config_refuses_what_cannot_run():
    with pytest.raises(ValueError, match="serve.rate"):
        ServeConfig(rate=0)
    with pytest.raises(ValueError, match="needs serve.concurrency"):
        ServeConfig(rate=None)
    with pytest.raises(ValueError, match="arrival=gamma"):
        ServeConfig(burstiness=2.0)
    with pytest.raises(ValueError, match="needs an SLO"):
        ServeConfig(search=Search.capacity)
    with pytest.raises(ValueError, match="p99_ms"):
        SloConfig(p99_ms=-1)


def _serve_in_process(spec: Spec, run_batch, max_batch=4, delay_s=0.001, max_queue=1000):
    """The real server loop here, the real generator in a thread, over a real socket pair."""
    mine, theirs = wire.socket_pair()
    out = {}

    def generator():
        out["requests"] = generate(theirs, spec)
        theirs.close()  # as the generator's process ends

    thread = threading.Thread(target=generator)
    thread.start()
    assert wire.REQUEST.unpack(mine.recv(64))[0] == wire.READY
    mine.send(wire.START.pack(wire.now() + 0.01))
    batches = server.serve([mine], run_batch, max_batch, delay_s, max_queue=max_queue)
    thread.join(30)
    return out["requests"], batches


def test_a_stalled_server_shows_the_stall_in_latency_from_the_scheduled_time():
    """Coordinated omission: with one request outstanding at a time (concurrency=1), a
    server stalled for 0.4 s holds back every request scheduled meanwhile. From the send
    time only the one request caught in the stall sees it; from the scheduled time all of
    those held back do, by as much as they waited."""
    stall_s, stalled = 0.4, []

    def run_batch(n):
        if not stalled and time.monotonic() > began + 0.3:
            stalled.append(n)
            time.sleep(stall_s)

    began = time.monotonic()
    requests, _ = _serve_in_process(Spec(rate=100, duration_s=1.2, seed=0, concurrency=1, drain_s=2), run_batch)
    assert all(r.ok for r in requests)
    late = [r for r in requests if r.latency_ms > stall_s * 1e3 / 2]
    late_from_send = [r for r in requests if r.sent_latency_ms > stall_s * 1e3 / 2]
    assert len(late_from_send) <= 2
    assert len(late) >= 10  # ~100/s x 0.4 s were scheduled during the stall
    assert max(r.latency_ms for r in requests) >= stall_s * 1e3 * 0.9
    assert all(r.held for r in late[1:])


def test_the_server_batches_and_rejects_beyond_its_queue():
    sizes = []

    def run_batch(n):
        sizes.append(n)
        time.sleep(0.02)  # 4 per 20 ms: 200/s at most, offered 1000/s

    mine, theirs = wire.socket_pair()
    out = {}
    spec = Spec(rate=1000, duration_s=0.5, seed=0, drain_s=0.5)
    thread = threading.Thread(target=lambda: out.setdefault("requests", generate(theirs, spec)))
    thread.start()
    mine.recv(64)
    mine.send(wire.START.pack(wire.now() + 0.01))
    batches = server.serve([mine], run_batch, 4, 0.001, max_queue=50)
    thread.join(30)
    requests = out["requests"]
    assert max(sizes) == 4 and batches.rejected > 0
    statuses = {s: sum(r.status == s for r in requests) for s in (slo.OK, slo.REJECTED, slo.TIMEOUT)}
    assert statuses[slo.REJECTED] == batches.rejected and statuses[slo.OK] == sum(sizes)
    assert all(math.isnan(r.latency_ms) for r in requests if not r.ok)  # never a latency of zero


def test_ttft_tpot_and_goodput_of_decoders_on_synthetic_timestamps():
    # 200 requests, 5 tokens each: first token 40 ms after the scheduled time, then 10 ms per token
    reqs = []
    for i in range(200):
        r = _request(i, 80.0)
        r.first = r.scheduled + 0.040
        reqs.append(r)
    reqs[0].first = reqs[0].scheduled + 0.075  # one slow prefill: TTFT 75 ms, TPOT 1.25 ms
    v = slo.summarize(reqs, 2.0, None, 1, 100, ttft_ms=50.0, tokens=5, itl_ms=[10.0] * 800)
    m = {metric.name: value for metric, value in v.metrics.items()}
    assert m["serve_ttft_ms_p50"] == pytest.approx(40.0) and m["serve_tpot_ms_p50"] == pytest.approx(10.0)
    window = 1.99 + 0.080  # to the last completion
    assert m["serve_itl_ms_p50"] == 10.0 and m["serve_output_tokens_per_s"] == pytest.approx(200 * 5 / window)
    assert m["goodput"] == pytest.approx(199 / window)  # the slow prefill misses the TTFT bound
    assert v.slo_met is True  # 1 in 200 over the bound: the p99 TTFT is within it
    tight = slo.summarize(reqs, 2.0, None, 1, 100, tpot_ms=5.0, tokens=5)
    assert tight.slo_met is False and tight.metrics[slo.GOODPUT] == pytest.approx(1 / window)


def test_the_server_outlives_a_generator_that_gave_up():
    """The generator's drain time passes while a batch runs; it stops and its process ends.
    The answers then have nowhere to go: the server goes on, the generator counted them failed."""
    requests, batches = _serve_in_process(
        Spec(rate=50, duration_s=0.2, seed=0, drain_s=0.1), lambda n: time.sleep(0.5), max_batch=1
    )
    assert any(r.status == slo.TIMEOUT for r in requests) and batches.sizes


def test_an_idle_server_polls_before_it_sleeps():
    from runners.worker.server import _poll

    mine, theirs = wire.socket_pair()
    began = time.monotonic()
    assert _poll([mine], 0.02) == [] and time.monotonic() - began >= 0.02  # nothing came: polled the whole time
    theirs.send(wire.REQUEST.pack(7))
    assert _poll([mine], 5.0) == [mine]  # found without waiting out the poll


def test_a_run_whose_sends_were_late_beyond_the_bound_is_invalid():
    # 100 requests, 5 of them sent 50 ms late: the offered rate was not the one scheduled
    reqs = [_request(i, 10.0, delay_ms=50.0 if i % 20 == 0 else 0.1) for i in range(100)]
    late = slo.summarize(reqs, 10.0, None, 0, 1, max_send_delay_ms=20.0)
    assert not late.valid and "5.0% of requests were sent more than serve.max_send_delay_ms=20 ms" in late.why_invalid
    assert late.metrics[slo.VALID] == 0.0 and late.sent_late
    assert slo.summarize(reqs, 10.0, None, 0, 1, max_send_delay_ms=60.0).valid  # within the bound
    for r in reqs:
        r.held = True  # waiting for a serve.concurrency slot is not the generator's delay
    assert slo.summarize(reqs, 10.0, None, 0, 1, max_send_delay_ms=20.0).valid


def test_a_server_whose_batches_raised_counts_failed_requests_and_says_so():
    state = {"n": 0}

    def run_batch(n):
        state["n"] += 1
        if state["n"] % 2:
            raise RuntimeError("out of memory")
        time.sleep(0.001)

    requests, batches = _serve_in_process(Spec(rate=200, duration_s=0.3, seed=0, drain_s=0.5), run_batch, max_queue=50)
    assert batches.failed > 0 and batches.errors[0] == "RuntimeError: out of memory"
    verdict = slo.summarize(requests, 0.3, None, 0, 1, batch_errors=batches.failed)  # no SLO given
    errors = sum(r.status == slo.ERROR for r in requests)
    assert errors > 0 and verdict.failures["error"] == errors and verdict.metrics[slo.FAILED] >= errors
    assert not verdict.valid and f"{batches.failed} batch(es) raised: {errors} request(s)" in verdict.why_invalid


def test_a_tpot_bound_with_one_output_token_is_refused_in_one_line():
    with pytest.raises(
        ValueError, match="serve.slo.tpot_ms bounds the time between output tokens, and serve.new_tokens=1"
    ):
        ServeConfig(new_tokens=1, slo=SloConfig(tpot_ms=5.0))
    ServeConfig(new_tokens=2, slo=SloConfig(tpot_ms=5.0))


class _Run:
    """A finished serve run as the parent reads it (Result.value)."""

    def __init__(self, status="success", **metrics):
        self.status, self.metrics, self.run_id = status, metrics, f"r{id(self)}"

    @property
    def ok(self):
        return self.status == "success"

    def value(self, name, default=None):
        return self.metrics.get(name, default)


def _served(p99, failed=0):
    """A run's figures as its result file holds them: slo_latency_ms_p99 left out when infinite."""
    metrics = {"requests": 1000.0, "requests_failed": float(failed), "serve_latency_ms_p99": 10.0, "goodput": 90.0}
    if math.isfinite(p99):
        metrics["slo_latency_ms_p99"] = p99
    return _Run(**metrics)


def test_a_tenant_with_many_rejections_is_the_worst_tenant_not_an_unaffected_one():
    from runners.contracts import GroupRecord
    from runners.scenarios.serve import Serve

    group = GroupRecord("tenants", "g", "g", [], "success")
    # Tenant b completed few requests quickly (10 ms p99 over those) and had 300 rejected.
    Serve().summarize_tenants(group, _served(12.0), [_served(15.0), _served(math.inf, failed=300)])
    assert group.value("worst_tenant_latency_ms_p99") is None and group.details["worst_tenant_p99_infinite"]
    assert group.value("p99_inflation") is None  # unbounded, not 10/12
    from runners.parent.serve_lines import group_line

    assert "worst tenant p99 unbounded" in group_line(group)
    calm = GroupRecord("tenants", "h", "h", [], "success")
    Serve().summarize_tenants(calm, _served(12.0), [_served(15.0), _served(24.0, failed=2)])
    assert calm.value("worst_tenant_latency_ms_p99") == 24.0 and calm.value("p99_inflation") == 2.0


def test_a_victim_whose_requests_failed_next_to_the_aggressor_is_inflated_without_bound():
    from runners.contracts import GroupRecord
    from runners.parent.interference import victim_figures
    from runners.parent.serve_lines import group_line

    group = GroupRecord("interference", "g", "g", [], "success", details={"aggressor": "train"})
    victim_figures(group, _served(12.0), _served(math.inf, failed=200))  # its completed ones: 10 ms
    assert group.value("p99_inflation") is None and group.details["victim_p99_infinite"]
    assert "victim p99 unbounded next to a train aggressor" in group_line(group)
    measured = GroupRecord("interference", "h", "h", [], "success", details={"aggressor": "train"})
    victim_figures(measured, _served(12.0), _served(36.0, failed=5))
    assert measured.value("p99_inflation") == 3.0 and measured.value("victim_latency_ms_p99") == 36.0


def test_a_capacity_search_that_never_failed_says_at_least():
    from runners.contracts import GroupRecord
    from runners.parent.search import MAX_RATE
    from runners.parent.serve_lines import group_line

    group = GroupRecord("capacity", "g", "g", [], "success", details={"at_least": True, "bracket": [320.0, None]})
    group.set(MAX_RATE, 320.0)
    assert "max rate at SLO at least 320.00 requests/s (no rate tried missed it" in group_line(group)


def test_a_capacity_search_with_a_probe_its_generator_could_not_offer_is_unknown(monkeypatch):
    """Not a rate the server failed: the search is `failed`, and says why."""
    from types import SimpleNamespace

    from runners.contracts import GroupRecord
    from runners.parent import search
    from runners.parent.serve_lines import group_line

    def probe(rate):
        late = rate > 150  # the generator cannot offer more than 150/s here
        details = {"serve": {"sent_late": late}}
        return _Run("invalid" if late else "success", slo_met=0.0 if late else 1.0), details

    def launch(plan_, progress, ref):
        result, details = probe(plan_.rate)
        result.details = details
        return result, None

    monkeypatch.setattr(search, "_probe_plan", lambda plan_, rate: SimpleNamespace(rate=rate, config=plan_.config))
    monkeypatch.setattr(search, "_done_before", lambda probe: None)
    monkeypatch.setattr(search, "launch", launch)
    monkeypatch.setattr(search, "_finish", lambda group, runs: group)
    monkeypatch.setattr(search, "_crashed", lambda runs: False)
    monkeypatch.setattr(search, "new_group", lambda *a: GroupRecord("capacity", "g", "g", [], "success"))
    serve = ServeConfig(rate=100, search=Search.capacity, search_max_runs=4, slo=SloConfig(p99_ms=50))
    group, _ = search.capacity(SimpleNamespace(config=SimpleNamespace(serve=serve)), lambda line: None)
    assert group.status == "failed" and group.details["late_probes"] == [200.0, 175.0]
    assert "UNKNOWN: the load generator could not offer [200.0, 175.0] requests/s" in group_line(group)
