"""Every shipped model x workload x backend option runs end to end on tiny shapes (CPU)."""

import pytest
from mlflow.tracking import MlflowClient

import zoo
from runners.parent import compose

from conftest import TINY, has_gpu, logged_runs, results_of, run_dirs


@pytest.mark.slow
def test_every_shipped_config_runs_on_tiny_shapes(cli, results_dir):
    models = ",".join(compose.group_options("model"))
    # every model trains and infers; generate (decoders) and probe (GPU) are tested on their own
    workloads = "infer,train"
    backends = "cpu" if not has_gpu() else "cpu,native"
    done = cli("--multirun", f"model={models}", f"workload={workloads}", f"backend={backends}", *TINY, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = results_of(results_dir)
    expected = len(compose.group_options("model")) * len(workloads.split(",")) * len(backends.split(","))
    assert len(results) == expected
    for result in results:
        assert result.ok, result.error
        assert result.model.size == "tiny" and result.value("throughput") > 0
        entry = zoo.get(result.model.name)
        if entry.inputs == "text":
            assert result.value("tokens_per_s") == pytest.approx(result.value("throughput") * 16)
        if entry.framework == "pytorch":
            assert result.model.params > 0
            assert result.environment.framework["torch"]
        if entry.framework == "tensorflow":
            assert result.environment.framework["mode"] == "graph"  # eager and xla: test_zoo_library
        if result.workload == "train" and entry.framework == "pytorch":
            assert result.measurement.final_loss > 0

    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id])
    [sweep] = [r for r in runs if r.data.tags.get("kind") == "sweep"]  # one parent run per sweep
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
    assert len(children) == expected and {r.info.status for r in runs} == {"FINISHED"}


def test_tracking_none_writes_results_but_no_store(cli, results_dir):
    done = cli("model=dummy", "backend=cpu", "tracking=none", *TINY)
    assert done.returncode == 0
    assert len(run_dirs(results_dir)) == 1 and not logged_runs(results_dir)
