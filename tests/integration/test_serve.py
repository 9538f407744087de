"""workload=serve end to end, as a user types it: a tiny BERT served on the CPU at a low
rate and at an overload, two tenants, and the capacity and density searches on the
self-test model (whose service time is a known sleep). tracking=none: the store is not
what these check. Thresholds are wide: the machine's load moves every figure."""

import csv
import statistics

import pytest

from conftest import groups_of, results_of, run_command, run_dirs

BERT = ["model=bert", "model.size=tiny", "workload=serve", "backend=cpu", "backend.threads=1", "tracking=none"]
SHORT = ["serve.duration_s=2", "serve.min_duration_s=1", "serve.min_requests=8", "workload.warmup_steps=1"]


def _latencies_by_third(run_dir):
    rows = [r for r in csv.DictReader(open(run_dir / "requests.csv")) if r["status"] == "ok"]
    rows.sort(key=lambda r: float(r["scheduled"]))
    lat = [float(r["completed"]) - float(r["scheduled"]) for r in rows]
    third = len(lat) // 3
    return statistics.median(lat[:third]), statistics.median(lat[-third:])


def test_tiny_bert_at_a_low_rate_and_at_an_overload(cli, results_dir):
    done = cli(
        "--multirun",
        *BERT,
        *SHORT,
        "serve.rate=6,3000",
        "serve.slo.p99_ms=2000",
        "serve.max_queue=100000",
        "serve.drain_s=1",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    by_rate = {r.config["serve"]["rate"]: r for r in results_of(results_dir)}
    low, over = by_rate[6], by_rate[3000]
    assert low.ok and low.value("requests_failed") == 0
    assert low.value("goodput") >= 0.8 * low.value("offered_rate")  # every request answered within the SLO
    assert low.value("slo_met") == 1 and low.details["serve_batches"]["batches"] >= 1
    # overload: far fewer good answers than requests, latency from the scheduled time growing with the queue
    assert over.value("goodput") < 0.5 * over.value("offered_rate") and over.value("slo_met") == 0
    assert over.value("requests") == over.value("requests_completed") + over.value("requests_failed")
    assert over.value("serve_latency_ms_p99") > low.value("serve_latency_ms_p99")
    [over_dir] = [d for d in run_dirs(results_dir) if d.name.split("-")[-1] == over.run_id.split("-")[-1]]
    early, late = _latencies_by_third(over_dir)
    assert late > 2 * early
    assert over.details["serve_batches"]["mean_batch_size"] > 2  # the queue filled the batches
    assert "SLO p99 <= 2000 ms NOT met" in done.stderr and "SLO p99 <= 2000 ms MET" in done.stderr


def test_two_tenants_each_with_its_own_load(cli, results_dir):
    done = cli(*BERT, *SHORT, "serve.rate=8", "serve.slo.p99_ms=1000", "tenants=2")
    assert done.returncode == 0, done.stderr[-3000:]
    results = results_of(results_dir)
    assert sorted(r.group.role for r in results) == ["alone", "tenant", "tenant"]
    tenants = [r for r in results if r.group.role == "tenant"]
    arrivals = {
        (r.group.role, r.group.index): [row["scheduled"] for row in csv.DictReader(open(d / "requests.csv"))]
        for r, d in zip(results, run_dirs(results_dir))
    }
    assert arrivals[("tenant", 0)] != arrivals[("tenant", 1)]  # each tenant draws its own arrival stream
    assert arrivals[("alone", None)] == arrivals[("tenant", 0)]  # alone: tenant 0's load, for its p99 inflation
    [group] = groups_of(results_dir)
    assert group.kind == "tenants" and set(group.details["tenants"]) == {t.run_id for t in tenants}
    assert group.value("tenants_meeting_slo") == 2
    assert group.value("aggregate_goodput") == sum(t.value("goodput") for t in tenants)
    assert group.value("worst_tenant_latency_ms_p99") == max(t.value("serve_latency_ms_p99") for t in tenants)
    assert "2/2 tenants met the SLO" in done.stderr


# An SLO far above the self-test server's 10 ms service time (its `default` size; model.size=auto
# would pick its 1 ms `tiny` on a CPU-only machine): a loaded machine must not move the verdicts.
DUMMY = ["model=dummy", "workload=serve", "backend=cpu", "tracking=none", *SHORT, "serve.slo.p99_ms=250"]
DUMMY.append("model.size=default")  # after the rest: tests take DUMMY's first items by position


def test_capacity_search_finds_the_rate_and_resumes(cli, results_dir):
    # The self-test server sleeps 10 ms per batch of up to 8: at most 800 requests/s.
    args = [*DUMMY, "serve.search=capacity", "serve.rate=100", "serve.search_tolerance=0.3", "serve.search_max_runs=6"]
    done = cli(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    [group] = groups_of(results_dir)
    best = group.value("max_rate_at_slo")
    assert group.kind == "capacity" and 100 <= best <= 800
    first, second = group.details["probes"][:2]
    assert first["rate"] == 100 and second["rate"] == (200 if first["slo_met"] else 50)  # doubles or halves
    assert all(p["slo_met"] == 1 for p in group.details["probes"] if p["rate"] <= best)
    assert "max rate at SLO" in done.stderr
    runs = len(run_dirs(results_dir))
    again = cli(*args, "resume=true")  # every probe found done: the same answer, nothing run again
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(run_dirs(results_dir)) == runs
    assert max(g.value("max_rate_at_slo") for g in groups_of(results_dir)) == best


def test_density_search_counts_tenants_at_the_slo(cli, results_dir):
    done = cli(*DUMMY, "serve.search=density", "serve.rate=50", "serve.search_max_runs=2")
    assert done.returncode == 0, done.stderr[-3000:]
    [group] = groups_of(results_dir)
    assert group.kind == "density" and group.value("density") == 2
    assert group.details["tried"] == {"1": True, "2": True}
    assert len(run_dirs(results_dir)) == 3  # 1, then 2 at once
    assert "density 2 tenants" in done.stderr


def test_serve_refuses_what_it_cannot_run(cli):
    for args, message in (
        (["model=keras_bert", "workload=serve"], "runs PyTorch models"),
        (["workload=serve", "serve.slo.ttft_ms=100"], "apply to decoders"),
        (["model=gpt2", "workload=serve", "workload.compile=inductor"], "served token by token"),
        (["workload=serve", "serve.search=capacity"], "needs an SLO"),
        (["workload=serve", "serve.rate=-3"], "serve.rate must be > 0"),
        (["workload=serve", "tenants=2", "serve.search=density", "serve.slo.p99_ms=9"], "choose one"),
        (
            ["workload=serve", "serve.rate=null", "serve.concurrency=2", "serve.search=density", "serve.slo.p99_ms=9"],
            "give serve.rate",
        ),
        (["workload=serve", "serve.rate=null", "serve.concurrency=2", "serve.aggressor=train"], "give serve.rate"),
        (["workload=serve", "serve.duration_s=3"], "shorter than serve.min_duration_s=5"),
    ):
        done = cli(*args, "tracking=none")
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_interference_of_a_training_job_and_of_a_busier_server(cli, results_dir):
    done = cli("--multirun", *DUMMY, "serve.rate=50", "serve.aggressor=train,serve")
    assert done.returncode == 0, done.stderr[-3000:]
    groups = {g.details["aggressor"]: g for g in groups_of(results_dir)}
    assert set(groups) == {"train", "serve"}
    results = {r.run_id: r for r in results_of(results_dir)}
    for kind, group in groups.items():
        roles = {m.role: results[m.run_id] for m in group.members}
        assert set(roles) == {"alone", "victim", "aggressor"}
        assert roles["aggressor"].workload == kind
        if kind == "serve":
            assert roles["aggressor"].value("offered_rate") > 2.5 * roles["victim"].value("offered_rate")  # 4 x
        victim, aggressor = roles["victim"].measurement.window, roles["aggressor"].measurement.window
        assert aggressor[0] <= victim[0] + 1.0 and aggressor[1] >= victim[1]  # the aggressor ran all along
        # p99 over every request, a failed one infinitely late (slo_latency_ms_p99)
        assert group.value("p99_inflation") == roles["victim"].value("slo_latency_ms_p99") / roles["alone"].value(
            "slo_latency_ms_p99"
        )
    assert "p99 inflation" in done.stderr


def test_a_tiny_decoder_streams_tokens_ttft_tpot_itl(cli, results_dir):
    args = ["model=gpt2", *BERT[1:], *SHORT, "workload.seq_len=16", "serve.new_tokens=4", "serve.rate=4"]
    done = cli(*args, "serve.slo.ttft_ms=5000", "serve.slo.tpot_ms=5000", "serve.max_batch_size=2")
    assert done.returncode == 0, done.stderr[-3000:]
    [r] = results_of(results_dir)
    v = r.value
    assert 0 < v("serve_ttft_ms_p50") < v("serve_latency_ms_p50")  # the first token comes before the last
    assert v("serve_tpot_ms_p50") > 0 and v("serve_itl_ms_p50") > 0
    assert v("serve_output_tokens_per_s") == v("request_throughput") * 4
    assert v("slo_met") == 1 and v("goodput") == v("request_throughput")
    assert "TTFT p50" in done.stderr


@pytest.mark.slow
def test_compare_shows_max_rate_at_slo_per_pair(cli, results_dir):
    """Two capacity searches logged to the test's MLflow store, then `make compare` on them."""
    search = [*DUMMY[:3], *DUMMY[4:], "serve.search=capacity", "serve.rate=100", "serve.search_max_runs=2"]
    for label in ("a", "b"):
        done = cli(*search, f"label={label}")
        assert done.returncode == 0, done.stderr[-3000:]
    compared = run_command(results_dir, "analyze", "compare", "baseline=label=a", "candidate=label=b")
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert "max rate at SLO" in compared.stdout
    a, b = sorted(groups_of(results_dir), key=lambda g: g.created_at)
    rate_a, rate_b = a.value("max_rate_at_slo"), b.value("max_rate_at_slo")
    assert f"{rate_a:,.2f}" in compared.stdout and f"{rate_b:,.2f}" in compared.stdout
    # A search whose every probe met the SLO found no limit: "at least", never divided as if measured.
    from runners.analysis.capacity import CapacityRow

    bounds = a.details["at_least"], b.details["at_least"]
    assert CapacityRow("", "", "", rate_a, rate_b, "", "", *bounds).ratio_text in " ".join(compared.stdout.split())
    assert ("at least" in compared.stdout) == any(bounds)
    assert "equivalent" not in compared.stdout  # a serve run's throughput is its offered rate: no verdict on it


def test_a_server_whose_batches_raise_counts_them_failed_and_is_invalid_without_an_slo(cli, results_dir):
    # Warm-up takes serve.max_batch_size passes (8); every pass after them raises.
    args = [*DUMMY[:4], *SHORT, "serve.rate=20", "backend.extra_env.VGPU_BENCH_DUMMY_FAULT=fail-after:8"]
    done = cli(*args)
    assert done.returncode == 1 and "batch(es) raised" in done.stderr, done.stderr[-3000:]
    [r] = results_of(results_dir)
    assert r.status == "invalid" and r.value("serve_valid") == 0
    assert r.value("requests_failed") == r.value("requests") > 0 and r.details["serve"]["failures"]["error"] > 0
    batches = r.details["serve_batches"]
    assert batches["failed_batches"] > 0 and batches["errors"][0].startswith("RuntimeError: forward pass 9 failed")
