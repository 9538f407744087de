"""`serve.aggressor=train|serve`: interference, in the parent. The server (the victim) runs
alone at serve.rate, then again while an aggressor runs on the same backend: the same model
training, or a second server of it at serve.aggressor_rate (default 4 x serve.rate). Both
start measuring at the same moment (the tenants' file barrier); the aggressor lasts the
victim's whole schedule. The group's figure: the victim's p99 inflation, with / alone."""

from __future__ import annotations

import dataclasses
import math

from runners.config import Aggressor, BenchConfig, from_plain, to_plain
from runners.contracts import GroupRecord, GroupRef, Metric
from runners.parent.groups import Progress, Run, _finish, launch_at_once, new_group
from runners.parent.launch import launch
from runners.parent.plan import Plan, plan
from runners.scenarios.serve import P99_INFLATION
from runners.serving import slo

VICTIM_ALONE_P99 = Metric("victim_alone_latency_ms_p99", "ms", "interference: the victim's slo_latency_ms_p99, alone")
VICTIM_P99 = Metric(
    "victim_latency_ms_p99", "ms", "interference: the victim's slo_latency_ms_p99 next to the aggressor"
)
GOODPUT_LOSS = Metric("victim_goodput_ratio", "ratio", "interference: the victim's goodput with / alone")


def aggressor_config(config: BenchConfig) -> BenchConfig:
    serve = config.serve
    quiet = dataclasses.replace(serve, aggressor=Aggressor.none)
    if serve.aggressor is Aggressor.serve:
        return dataclasses.replace(
            config, serve=dataclasses.replace(quiet, rate=serve.aggressor_rate or 4 * serve.rate)
        )
    from runners.backends import backends
    from runners.scenarios.train import TrainConfig

    plain = to_plain(dataclasses.replace(config, serve=quiet))
    # The victim's schedule (extended until serve.min_requests arrivals) and its drain, at most.
    expected = max(serve.duration_s, 1.5 * serve.min_requests / serve.rate)
    lasts = expected + serve.drain_s
    plain["workload"] = {
        **{k: v for k, v in plain["workload"].items() if k in ("batch_size", "seq_len", "image_size", "precision")},
        "kind": "train",
        "warmup_steps": 1,
        "min_steps": 1,
        "min_duration_s": lasts,
        "max_duration_s": lasts + 5,
    }
    own = {("workload",): TrainConfig, ("backend",): backends.get(config.backend.name).config_class}
    return from_plain(BenchConfig, plain, own)


def run(plan_: Plan, progress: Progress) -> tuple[GroupRecord, list[Run]]:
    config = plan_.config
    kind = config.serve.aggressor.value
    group = new_group("interference", plan_, f"vs-{kind}")
    quiet = plan(dataclasses.replace(config, serve=dataclasses.replace(config.serve, aggressor=Aggressor.none)))
    aggressor = plan(aggressor_config(config))  # before anything runs: a bad aggressor wastes no run
    progress("victim alone")
    alone = launch(quiet, progress, GroupRef("interference", group.id, "alone"))
    progress(f"victim next to a {kind} aggressor")
    victim, attacker = launch_at_once(
        [
            (quiet, GroupRef("interference", group.id, "victim", 0, 2)),
            (aggressor, GroupRef("interference", group.id, "aggressor", 1, 2)),
        ],
        plan_.results_dir / "runs" / f".barrier-{group.id}",
        progress,
    )
    runs = [alone, victim, attacker]
    group.details.update(aggressor=kind, aggressor_status=attacker[0].status)
    victim_figures(group, alone[0], victim[0])
    return _finish(group, runs), runs


def victim_figures(group: GroupRecord, a, v) -> None:
    """The victim's p99 alone and next to the aggressor, and their ratio. Failed requests
    count as infinitely late: a victim whose requests were rejected next to the aggressor is
    inflated without bound, not unaffected."""
    if not (a.ok and v.ok):
        return
    p99_alone, p99_with = slo.p99_counting_failures(a), slo.p99_counting_failures(v)
    group.set(VICTIM_ALONE_P99, p99_alone)
    group.set(VICTIM_P99, p99_with)  # left out when infinite: details say so
    group.details["victim_p99_infinite"] = p99_with is not None and math.isinf(p99_with)
    if p99_alone and math.isfinite(p99_alone) and p99_with is not None:
        group.set(P99_INFLATION, p99_with / p99_alone)
    good_alone, good_with = a.value(slo.GOODPUT.name), v.value(slo.GOODPUT.name)
    if good_alone and good_with is not None:
        group.set(GOODPUT_LOSS, good_with / good_alone)
