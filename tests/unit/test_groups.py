"""The figures of a group of runs, on synthetic results."""

import pytest

from runners import names
from runners.contracts import GroupRecord, Measurement, ModelRecord, Result
from runners.parent.groups import jain_fairness, summarize_repeats, summarize_tenants, window_overlap


def _result(run_id: str, throughput: float, window=(0.0, 10.0)) -> Result:
    result = Result(
        run_id=run_id,
        run_name="m-infer-cpu",
        config_hash="h",
        task="workload",
        workload="infer",
        model=ModelRecord("m", "tiny", "python", "t"),
        backend={"name": "cpu", "device": "cpu"},
        device=None,
        config={},
        status="success",
    )
    result.set(names.THROUGHPUT, throughput)
    result.measurement = Measurement(0, 1, 1.0, True, list(window), None, [1.0])
    return result


def test_jain_fairness_bounds():
    assert jain_fairness([5.0, 5.0, 5.0]) == pytest.approx(1.0)
    assert jain_fairness([9.0, 0.0, 0.0]) == pytest.approx(1 / 3)
    assert jain_fairness([3.0, 1.0]) == pytest.approx(16 / 20)


def test_window_overlap():
    assert window_overlap([(0.0, 10.0), (0.0, 10.0)]) == 1.0
    assert window_overlap([(0.0, 10.0), (5.0, 10.0)]) == 0.5
    assert window_overlap([(0.0, 1.0), (2.0, 3.0)]) == 0.0


def test_tenant_figures_are_the_group_s_and_the_runs_stay_as_written():
    alone, tenants = _result("a", 100.0), [_result("t0", 40.0), _result("t1", 60.0, (5.0, 15.0))]
    group = GroupRecord("tenants", "g", "m-infer-cpu-tenants2", [], "failed")
    summarize_tenants(group, alone, tenants)
    assert group.value("aggregate_throughput") == 100.0 and group.value("alone_throughput") == 100.0
    assert group.value("mean_slowdown") == pytest.approx((100 / 40 + 100 / 60) / 2)
    assert group.details["slowdown"] == {"t0": pytest.approx(2.5), "t1": pytest.approx(100 / 60)}
    assert group.value("window_overlap") == 0.5
    assert all("slowdown" not in t.metrics for t in tenants)


def test_tenant_figures_count_only_the_window_all_tenants_shared():
    # t0 runs 5 contended 1 s steps while t1 runs, then 5 fast ones alone once t1 has ended
    t0, t1 = _result("t0", 10 / 6, (0.0, 6.0)), _result("t1", 2.0, (0.0, 5.0))
    t0.measurement.step_times_ms = [1000.0] * 5 + [200.0] * 5
    t1.measurement.step_times_ms = [500.0] * 10
    for tenant in (t0, t1):
        tenant.config = {"workload": {"batch_size": 1}}
    group = GroupRecord("tenants", "g", "n", [], "failed")
    summarize_tenants(group, _result("a", 4.0), [t0, t1])
    assert group.value("aggregate_throughput") == pytest.approx(1.0 + 2.0)  # not 10/6 + 2 from own windows
    assert group.details["slowdown"] == {"t0": pytest.approx(4.0), "t1": pytest.approx(2.0)}
    assert group.details["window"].startswith("common")


def test_a_failed_member_leaves_the_group_without_figures():
    failed = _result("t1", 60.0)
    failed.status = "failed"
    group = GroupRecord("tenants", "g", "n", [], "failed")
    summarize_tenants(group, _result("a", 100.0), [_result("t0", 40.0), failed])
    assert group.metrics == {}


def test_repeats_give_the_run_to_run_variation():
    group = GroupRecord("repeats", "g", "n", [], "failed")
    summarize_repeats(group, [_result("r0", 90.0), _result("r1", 110.0)])
    assert group.value("throughput_mean") == 100.0 and group.value("repeats") == 2
    assert group.value("throughput_cv") == pytest.approx(14.142135 / 100, rel=1e-5)


def test_a_probe_with_a_compute_share_is_judged_against_a_native_probe(monkeypatch):
    import contextlib
    from types import SimpleNamespace

    from runners.diagnostics.probe import COMPUTE_TFLOPS
    from runners.parent import groups

    def probe(tflops):
        result = _result("p", 1.0)
        result.set(COMPUTE_TFLOPS, tflops)
        return result

    events = []
    backend = SimpleNamespace(
        compute_share=lambda: 50.0, session=lambda: contextlib.nullcontext(events.append("session"))
    )
    plan = SimpleNamespace(task="probe", backend=backend, run_name="probe-mps")
    monkeypatch.setattr(groups, "native_reference", lambda plan_, progress: events.append("native") or probe(400.0))
    monkeypatch.setattr(groups, "launch", lambda plan_, progress, group=None: (probe(180.0), None))
    group, runs = groups.run_diagnostic(plan, lambda line: None)
    assert events == ["native", "session"]  # the bare GPU first, before the backend's daemon starts
    assert group.value("compute_share_achieved") == 45.0 and group.details["compute_share_holds"]
    assert group.status == "success" and len(group.members) == 1
