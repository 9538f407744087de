"""Profiles, compile variants, microbenchmark refusal and the overhead estimate (CPU)."""

import json

import pytest
from mlflow.tracking import MlflowClient

from runners.contracts import RESULT_FILE, Result

from conftest import MICRO_NATIVE, MICRO_REMOTE, TINY, has_gpu, run_command, run_dirs

BERT = ["model=bert", "backend=cpu", *TINY]


def test_profile_logs_a_trace_a_table_and_per_step_counts(cli, results_dir):
    done = cli(*BERT, "profile=true", "profile_steps=2")
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = run_dirs(results_dir)[0]
    result = Result.load(run_dir / RESULT_FILE)
    assert result.details["profile"]["steps"] == 2 and result.value("prof_cpu_ops") > 50
    assert result.metrics["prof_cpu_ops"].unit == "count/step"
    trace = json.loads((run_dir / "trace.json").read_text())
    assert any(e.get("cat") == "cpu_op" for e in trace["traceEvents"])  # a real Chrome trace
    assert "Self CPU" in (run_dir / "top_ops.txt").read_text()
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("vgpu-bench").experiment_id])
    assert {"trace.json", "top_ops.txt"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.data.metrics["prof_cpu_ops"] == result.value("prof_cpu_ops")


@pytest.mark.slow
def test_inductor_runs_on_cpu_and_fuses_operators(cli, results_dir):
    for mode in ("none", "inductor"):
        done = cli(*BERT, "tracking=none", "profile=true", f"workload.compile={mode}", timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    ops = {}
    for run_dir in run_dirs(results_dir):
        result = Result.load(run_dir / RESULT_FILE)
        ops[result.config["workload"]["compile"]] = result.value("prof_cpu_ops")
        if result.config["workload"]["compile"] == "none":
            assert "compile" not in result.details
            continue
        # the compiled mode proves it ran: torch's counters, and the compiled_mode_ran check
        record = result.details["compile"]
        assert result.ok and record["mode"] == "inductor" and record["fallback"] is None
        assert record["graphs"] >= 1 and record["ops_captured"] > 10
        assert isinstance(record["graph_breaks"], int) and record["cudagraph_replays"] is None
        measured = result.measurement.steps + result.details["profile"]["steps"]  # a call per step
        assert record["calls"] == 1 + measured and record["measured_calls"] == measured
        [check] = [c for c in result.evidence.checks if c.name == "compiled_mode_ran"]
        assert check.passed and f"over {measured} measured calls" in check.detail
    assert ops["inductor"] < ops["none"] / 2


@pytest.mark.parametrize(
    "args, expected",
    [
        (["workload=microbench", "backend=cpu"], "unknown workload 'microbench'"),
        (["workload.compile=cudagraphs", "backend=cpu"], "workload.compile=cudagraphs captures CUDA graphs"),
        (
            ["model=keras_bert", "workload.compile=inductor", "backend=cpu"],
            "workload.compile applies to PyTorch models",
        ),
        (["workload.compile=jit", "backend=cpu"], "invalid value for workload.compile"),
    ],
)
def test_gpu_only_and_mismatched_variants_are_refused(cli, args, expected):
    if has_gpu() and "backend=cpu" not in args:
        pytest.skip("has a GPU")
    done = cli(*args)
    assert done.returncode == 2 and expected in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.slow
def test_comparison_shows_estimated_next_to_measured_overhead(cli, results_dir):
    """Profiled workload runs are real; the two microbenchmark runs are stand-ins logged
    straight to MLflow (microbenchmarks need a GPU), to test the wiring end to end."""

    from runners.tracking.write import client_for

    assert cli("--multirun", *BERT, "label=base,cand", "profile=true").returncode == 0
    from runners.config import TrackingConfig

    client, experiment = client_for(TrackingConfig(), results_dir)
    for label, metrics in (("base", MICRO_NATIVE), ("cand", MICRO_REMOTE)):
        run = client.create_run(
            experiment,
            run_name="microbench-stand-in",
            tags={
                "label": label,
                "task": "microbench",
                "workload": "microbench",
                "status": "success",
                "run_id": f"stand-in-{label}",
                "model_size": "None",
            },
        )
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id)
    done = run_command(results_dir, "analyze", "compare", "baseline=label=base", "candidate=label=cand")
    assert done.returncode == 0, done.stderr
    table = sorted((results_dir / "tables").glob("*.md"))[-1].read_text()
    header, _, row = table.splitlines()[2:5]
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in row.split("|")]))
    # filled in (not "-"), and 0: a CPU step makes no CUDA calls, so nothing costs more
    assert cells["overhead % estimated"] == "+0.0" and cells["overhead % measured"] != "-"
    assert "## Microbenchmarks" in table and "| launch_us | 5 | 25 | 5.000 | worse |" in table
