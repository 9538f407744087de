"""The typed contracts: round trips, atomic writes, schema versions, groups."""

import json
from pathlib import Path

import pytest

from runners import names
from runners.config import BenchConfig, to_plain
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
    config = again.bench_config()
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
