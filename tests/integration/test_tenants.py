"""Multi-tenant runs on the CPU (tenants share its cores)."""

import pytest
from mlflow.tracking import MlflowClient

from runners.parent.groups import window_overlap

from conftest import TINY, groups_of, results_of, run_dirs


def test_two_tenants_log_a_parent_with_aggregate_and_fairness(cli, results_dir):
    # The self-test workload sleeps: tenants share the clock, not the 2 cores, and nothing else is needed
    # of a model to test the group; tenants on a real model run on a GPU (test_gpu.py).
    done = cli("model=dummy", "backend=cpu", "tenants=2", *TINY, "workload.min_duration_s=1")
    assert done.returncode == 0, done.stderr[-3000:]
    results = results_of(results_dir)
    roles = sorted((r.group.role, r.group.index if r.group.index is not None else -1) for r in results)
    assert roles == [("alone", -1), ("tenant", 0), ("tenant", 1)]
    tenants = [r for r in results if r.group.role == "tenant"]
    alone = next(r for r in results if r.group.role == "alone")
    [group] = groups_of(results_dir)
    assert group.kind == "tenants" and sorted(m.run_id for m in group.members) == sorted(r.run_id for r in results)
    for tenant in tenants:  # the group's figure, never written into the tenant's own result
        assert group.details["slowdown"][tenant.run_id] == pytest.approx(
            alone.value("throughput") / group.details["throughput_in_window"][tenant.run_id]
        )
        assert "slowdown" not in tenant.metrics
    # the barrier made them measure together
    assert window_overlap([tuple(t.measurement.window) for t in tenants]) > 0.5

    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id])
    [parent] = [r for r in runs if "aggregate_throughput" in r.data.metrics]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_name == "dummy-infer-cpu-tenants2" and len(children) == 3
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {f"{group.id}.json"}
    metrics = parent.data.metrics
    # over the window both tenants measured in, not each one's own
    assert metrics["aggregate_throughput"] == pytest.approx(sum(group.details["throughput_in_window"].values()))
    assert 0.5 <= metrics["jain_fairness"] <= 1.0 and metrics["tenants"] == 2
    assert {c.info.run_name for c in children} == {"dummy-infer-cpu-alone", "dummy-infer-cpu-t0", "dummy-infer-cpu-t1"}


def test_a_failing_tenant_fails_the_group_but_everything_is_recorded(cli, results_dir):
    done = cli("model=dummy", "backend=cpu", "tenants=2", *TINY, "backend.extra_env.VGPU_BENCH_DUMMY_FAULT=raise")
    assert done.returncode == 1
    assert len(run_dirs(results_dir)) == 3
    assert not list((results_dir / "runs").glob(".barrier-*"))
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FAILED"] * 4  # 3 runs + the group
