"""`workload=serve`: the worker holds the model and is the server; load-generator processes
send it requests on a seeded open-loop arrival schedule (docs/serving.md). The figures are
per-request latencies from the scheduled time, the SLO verdict and the goodput
(runners/serving/slo.py). A run is `valid` only with a schedule of serve.min_duration_s
and serve.min_requests requests; otherwise it is recorded `invalid`, with why."""

from __future__ import annotations

import dataclasses
import math
import os
import statistics

from runners import names
from runners.contracts import INVALID, SUCCESS, Metric
from runners.errors import UsageError
from runners.scenarios import Scenario, scenarios
from runners.serving import slo

TENANTS_AT_SLO = Metric("tenants_meeting_slo", "count", "serve tenants: tenants whose run met serve.slo")
AGGREGATE_GOODPUT = Metric("aggregate_goodput", "requests/s", "serve tenants: sum of the tenants' goodput")
WORST_P99 = Metric(
    "worst_tenant_latency_ms_p99", "ms", "serve tenants: the largest tenant slo_latency_ms_p99 (failed requests last)"
)
ALONE_P99 = Metric("alone_latency_ms_p99", "ms", "serve tenants: slo_latency_ms_p99 of the server alone")
P99_INFLATION = Metric("p99_inflation", "ratio", "serve: worst tenant (or victim) p99 / the same server's p99 alone")
SERVING_FRAMEWORKS = ("pytorch", "python")


@scenarios.register
class Serve(Scenario):
    name = "serve"
    summary = "a server under an open-loop arrival schedule: latency from the scheduled time, SLO, goodput"
    model_workload = "infer"  # a model that can infer can be served

    def plan(self, config, device):
        if device != "cpu" or config.backend.threads is not None:
            return config
        # The load generators need a core too: a model on every core makes its OpenMP threads
        # spin-wait against them (and the generator falls behind its schedule).
        threads = max(1, len(os.sched_getaffinity(0)) - config.serve.generators)
        return dataclasses.replace(config, backend=dataclasses.replace(config.backend, threads=threads))

    def check(self, config, entry, backend):
        if entry.framework not in SERVING_FRAMEWORKS:
            raise UsageError(
                f"workload=serve runs PyTorch models; {entry.name} is {entry.framework}. "
                f"Valid: models of {', '.join(SERVING_FRAMEWORKS)}"
            )
        if config.profile:
            raise UsageError("profile=true profiles timed steps; workload=serve has none. Use workload=infer")
        if config.tenants > 1 and (config.serve.search.value != "none" or config.serve.aggressor.value != "none"):
            raise UsageError(
                "tenants=N runs N servers once; serve.search and serve.aggressor make their own runs: choose one "
                "(serve.search=density searches over the number of tenants)"
            )
        slo_ = config.serve.slo
        if not decoder(entry) and (slo_.ttft_ms is not None or slo_.tpot_ms is not None):
            raise UsageError(
                f"serve.slo.ttft_ms and serve.slo.tpot_ms apply to decoders; {entry.name} answers with one forward "
                "pass. Valid: serve.slo.p99_ms"
            )
        if decoder(entry) and config.workload.compile.value != "none":
            raise UsageError(
                "workload.compile applies to one-pass models served; a decoder is served token by token, "
                "uncompiled. Valid: workload.compile=none"
            )
        if decoder(entry):
            try:
                entry.check_shape(shape_of(config.workload), config.serve.new_tokens)
            except ValueError as exc:
                raise UsageError(str(exc)) from None

    def run_worker(self, job, config, framework, entry, shape, result, wait_for_tenants, log) -> None:
        from runners.worker import serving

        serve, workload = config.serve, config.workload
        if decoder(entry):
            run_batch = framework.decode_batch_step(
                entry, workload, shape, config.seed, serve.max_batch_size, serve.new_tokens
            )
        else:
            run_batch = framework.batch_step(entry, workload, shape, config.seed, serve.max_batch_size)
        requests, itl_ms = serving.run(job, config, run_batch, result, wait_for_tenants, log)
        record(result, config, requests, log, serve.new_tokens if decoder(entry) else None, itl_ms)

    def summarize_tenants(self, group, alone, tenants) -> None:
        """Per-tenant goodput and p99, and whether all met the SLO; none when any run failed."""
        if not all(r.status in (SUCCESS, INVALID) for r in (alone, *tenants)):
            return
        # Failed requests count as infinitely late (slo_latency_ms_p99): a tenant whose requests
        # were rejected is the worst, not one that looks unaffected on what it completed.
        p99s = [slo.p99_counting_failures(t) for t in tenants]
        group.details["tenants"] = {
            t.run_id: {
                "goodput": t.value(slo.GOODPUT.name),
                "latency_ms_p99": p99,
                "requests_failed": t.value(slo.FAILED.name),
                "slo_met": t.value(slo.SLO_MET.name),
                "valid": t.ok,
            }
            for t, p99 in zip(tenants, p99s)
        }
        met = sum(t.ok and t.value(slo.SLO_MET.name) == 1 for t in tenants)
        goodputs = [t.value(slo.GOODPUT.name) for t in tenants]
        group.set(TENANTS_AT_SLO, met)
        group.set(AGGREGATE_GOODPUT, sum(goodputs) if None not in goodputs else None)
        alone_p99 = slo.p99_counting_failures(alone)
        if None not in p99s:
            worst = max(p99s)
            group.set(WORST_P99, worst)  # left out when infinite: details say so
            group.set(ALONE_P99, alone_p99)
            group.details["worst_tenant_p99_infinite"] = math.isinf(worst)
            if alone_p99 and math.isfinite(alone_p99):
                group.set(P99_INFLATION, worst / alone_p99)
        group.details["all_meet_slo"] = met == len(tenants)


def decoder(entry) -> bool:
    """A model that generates: served by static batches of prompts, each streaming its tokens."""
    return "generate" in entry.workloads


def shape_of(workload):
    import zoo

    return zoo.InputShape(seq_len=workload.seq_len, image_size=workload.image_size)


def record(result, config, requests, log, tokens=None, itl_ms=None) -> None:
    serve = config.serve
    verdict = slo.summarize(
        requests,
        serve.duration_s,
        serve.slo.p99_ms,
        serve.min_duration_s,
        serve.min_requests,
        max_send_delay_ms=serve.max_send_delay_ms,
        batch_errors=(result.details.get("serve_batches") or {}).get("failed_batches", 0),
        ttft_ms=serve.slo.ttft_ms,
        tpot_ms=serve.slo.tpot_ms,
        tokens=tokens,
        itl_ms=itl_ms,
    )
    for metric, value in verdict.metrics.items():
        result.set(metric, value)
    m = verdict.metrics
    for common, value in (
        (names.THROUGHPUT, m[slo.REQUEST_THROUGHPUT]),  # one request is one sample
        (names.LATENCY_P50, m[slo.LAT_P50]),
        (names.LATENCY_P90, m[slo.LAT_P90]),
        (names.LATENCY_P99, m[slo.LAT_P99]),
        (names.LATENCY_MEAN, statistics.fmean(lat) if (lat := [r.latency_ms for r in requests if r.ok]) else None),
        (names.STEPS, result.measurement.steps),
        (names.MEASURED_S, result.measurement.duration_s),
    ):
        result.set(common, value)
    warnings = []
    if verdict.behind:
        warnings.append(
            f"the load generator fell behind its schedule: {m[slo.BEHIND]:.1%} of requests sent more than "
            f"{slo.BEHIND_MS:g} ms late (send delay p99 {m[slo.DELAY_P99]:.2f} ms); latencies still count from "
            f"the scheduled time; try serve.generators={serve.generators + 1}"
        )
    result.details["serve"] = {
        "valid": verdict.valid,
        "invalid_because": verdict.why_invalid or None,
        "slo": {"p99_ms": serve.slo.p99_ms, "ttft_ms": serve.slo.ttft_ms, "tpot_ms": serve.slo.tpot_ms},
        "output_tokens": tokens,
        "slo_met": verdict.slo_met,
        "failures": verdict.failures,
        "sent_late": verdict.sent_late,
        "warnings": warnings,
        "requests_file": "requests.csv",
        "latency_from": "scheduled time (no coordinated omission); sent_latency_* from the send time",
    }
    for warning in warnings:
        log(f"warning: {warning}")
    result.status = SUCCESS if verdict.valid else INVALID
    if not verdict.valid:
        log(f"INVALID: {verdict.why_invalid}")
