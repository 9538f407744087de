"""The typed contracts: round trips, atomic writes, schema versions, groups."""

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runners import names
from runners.config import BenchConfig, DiagnoseConfig, config_hash, to_plain
from runners.contracts import (
    RESULT_FILE,
    SCHEMA_VERSION,
    GroupMember,
    GroupRecord,
    GroupRef,
    Job,
    Metric,
    ModelRecord,
    Quantity,
    Result,
)
from runners.worker import job_config

REPO = Path(__file__).resolve().parents[2]
V1 = Path(__file__).resolve().parents[1] / "data" / "v1" / "runs"


def _job(tmp_path=Path("/nonexistent")) -> Job:
    config = to_plain(BenchConfig())
    config["backend"]["name"] = "cpu"
    return Job(
        run_id="r1",
        run_name="m-infer-cpu",
        run_dir=str(tmp_path),
        config_hash="h",
        config=config,
        model=ModelRecord("m", "tiny", "python", "t"),
        backend={"name": "cpu", "device": "cpu", "env": {}},
        suite={"version": "0", "git_commit": "x"},
        group=GroupRef("repeats", "g", "repeat", 1, 3),
        spawned_at=1.0,
    )


def test_a_job_round_trips_and_rebuilds_the_typed_config(tmp_path):
    job = _job(tmp_path)
    job.write(tmp_path / "job.json")
    again = Job.load(tmp_path / "job.json")
    assert again == job
    config = job_config.bench_config(again)
    assert isinstance(config, BenchConfig) and config.workload.batch_size == 8
    assert config.backend.name == "cpu"


def test_a_result_round_trips_with_units_carried_by_each_metric(tmp_path):
    result = Result.for_job(_job())
    result.set(names.THROUGHPUT, 12.5)
    result.set(names.LATENCY_P50, 3.0)
    result.set(names.TOKENS_PER_S, None)  # absent, never 0
    result.set(names.LATENCY_P99, float("nan"))
    path = tmp_path / "run" / RESULT_FILE
    result.write(path)
    again = Result.load(path)
    assert again == result
    assert again.metrics == {"throughput": Quantity(12.5, "samples/s"), "latency_ms_p50": Quantity(3.0, "ms")}
    assert json.loads(path.read_text())["metrics"]["throughput"] == {"value": 12.5, "unit": "samples/s"}
    assert again.schema_version == SCHEMA_VERSION == 2
    assert again.display_name == "m-infer-cpu-r1"


def test_a_new_result_is_failed_until_it_succeeds():
    assert Result.for_job(_job()).status == "failed"


def test_failure_keeps_type_message_and_traceback():
    result = Result.for_job(_job()).fail("Timeout", "too slow", "tb")
    assert (result.error.type, result.error.message, result.error.traceback) == ("Timeout", "too slow", "tb")
    assert result.finished_at is not None


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / RESULT_FILE
    Result.for_job(_job()).write(path)
    bad = Result.for_job(_job())
    bad.metrics = {"x": Quantity(float("nan"), "ms")}  # not valid JSON: the write must fail and keep the old file
    with pytest.raises(ValueError):
        bad.write(path)
    assert Result.load(path).metrics == {}
    assert [p.name for p in tmp_path.iterdir()] == [RESULT_FILE]


def test_other_schema_versions_are_refused(tmp_path):
    path = tmp_path / RESULT_FILE
    path.write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(ValueError, match="schema_version"):
        Result.load(path)


def test_version_1_results_load_as_version_2():
    paths = sorted(V1.glob(f"*/{RESULT_FILE}"))
    assert len(paths) == 4
    for path in paths:
        old = json.loads(path.read_text())
        assert old["schema_version"] == 1
        result = Result.load(path)
        assert result.schema_version == 2 and result.ok and result.task == "workload"
        assert result.metrics["throughput"] == Quantity(old["metrics"]["throughput"], "samples/s")
        assert result.group == GroupRef("repeats", old["repeat"]["group"], "repeat", old["repeat"]["index"], 2)
        assert result.measurement.step_times_ms == old["measurement"]["step_times_ms"]
        assert result.environment.host == old["environment"]["host"]


def test_a_group_record_holds_its_own_figures(tmp_path):
    group = GroupRecord("repeats", "g1", "m-infer-cpu", [GroupMember("r1", "repeat", 0, "success")], "success")
    group.set(Metric("throughput_cv", "ratio"), 0.05)
    path = group.write(tmp_path)
    assert path == tmp_path / "groups" / "g1.json"
    assert GroupRecord.load(path) == group and group.value("throughput_cv") == 0.05


def test_a_metric_name_means_one_thing():
    Metric("throughput", "samples/s", names.THROUGHPUT.doc)  # the same declaration again is fine
    with pytest.raises(ValueError, match="declared twice"):
        Metric("throughput", "ms")


# Hashes computed on main before diagnostics had one (be5de48): `resume` finds the runs
# recorded then, so a workload's hash never changes (the real size, named, hashes as it did
# when model.size=null meant it).
MAIN_HASHES = [
    (["model=bert", "backend=cpu", "model.size=base"], "aacb1d5c56b1a870"),
    (["model=bert", "workload=serve", "backend=cpu", "model.size=base"], "1eb6d3eed4a1aca4"),
    (
        ["model=resnet50", "workload=train", "backend=cpu", "workload.batch_size=16", "seed=3", "model.size=full"],
        "835f6ca6b9399078",
    ),
    (
        [
            "model=bert",
            "runtime=onnxruntime",
            "backend=cpu",
            "label=x",
            "resume=true",
            "dry_run=true",
            "model.size=base",
        ],
        "bc25faf9235ddf3b",
    ),
]


def test_a_workloads_hash_is_what_it_was():
    from runners.parent import compose

    for overrides, expected in MAIN_HASHES:
        assert config_hash(compose.command_config(overrides, "bench")) == expected, overrides


def test_every_task_has_a_hash_of_its_own():
    from runners.parent import compose

    probe = compose.command_config(["diagnostic=probe", "backend=hami"], "diagnose")
    microbench = compose.command_config(["diagnostic=microbench", "backend=hami"], "diagnose")
    assert isinstance(probe, DiagnoseConfig)
    hashes = {config_hash(probe, "probe"), config_hash(microbench, "microbench")}
    bench = compose.command_config(["model=bert", "backend=cpu"], "bench")
    hashes |= {config_hash(bench), config_hash(bench, "parity")}  # parity's result is not the workload's
    assert len(hashes) == 4


def test_a_diagnostics_result_names_the_diagnostic():
    config = to_plain(DiagnoseConfig())
    job = dataclasses.replace(_job(), config=config, model=None, task="microbench")
    result = Result.for_job(job)
    assert (result.task, result.workload, result.model) == ("microbench", "microbench", None)
    assert Result.for_job(_job()).workload == "infer"


def test_the_contract_imports_no_registry():
    """runners.contracts and runners.names are the floor every module stands on: importing
    them must not pull in the backends, scenarios, analysis or diagnostics (an import circle)."""
    code = (
        "import sys, runners.contracts, runners.names; print(sorted(m for m in sys.modules if m.startswith('runners')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = done.stdout
    assert "'runners.contracts'" in loaded and "'runners.names'" in loaded
    uppers = ("backends", "scenarios", "analysis", "diagnostics", "parent", "worker", "tracking")
    for upper in (f"runners.{name}" for name in uppers):
        assert f"'{upper}" not in loaded, loaded


@pytest.mark.parametrize("module, allowed", [("contracts", {"runners.config"}), ("names", {"runners.contracts"})])
def test_the_contract_modules_import_nothing_above_them_even_lazily(module, allowed):
    """Lazy imports in a function tie the modules into one circle all the same."""
    tree = ast.parse((REPO / "runners" / f"{module}.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m.split(".")[0] in ("runners", "zoo")} == allowed
