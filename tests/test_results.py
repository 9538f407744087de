import json

import pytest

from runners import results


def _job():
    return {"run_id": "r1", "run_name": "m-infer-cpu", "spawned_at": 1.0,
            "config": {"model": {"name": "m"}, "workload": {"kind": "infer"}},
            "model": {"name": "m", "size": "tiny", "framework": "python", "task": "t"},
            "backend": {"name": "cpu", "device": "cpu", "env": {}}}


def test_round_trip(tmp_path):
    result = results.new(_job())
    results.set_metrics(result, {"throughput": 12.5, "latency_ms_p50": 3.0, "tokens_per_s": None})
    path = tmp_path / "run" / results.RESULT_FILE
    results.write(path, result)
    assert results.load(path) == json.loads(json.dumps(result))
    assert result["units"] == {"throughput": "samples/s", "latency_ms_p50": "ms"}
    assert result["schema_version"] == results.SCHEMA_VERSION


def test_a_new_result_is_failed_until_it_succeeds():
    assert results.new(_job())["status"] == "failed"


def test_failure_keeps_type_message_and_traceback():
    result = results.fail(results.new(_job()), "Timeout", "too slow", "tb")
    assert result["error"] == {"type": "Timeout", "message": "too slow", "traceback": "tb"}
    assert result["finished_at"] is not None


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / results.RESULT_FILE
    results.write(path, results.new(_job()))
    bad = results.new(_job())
    bad["metrics"] = {"x": float("nan")}  # not valid JSON: the write must fail and keep the old file
    with pytest.raises(ValueError):
        results.write(path, bad)
    assert results.load(path)["metrics"] == {}
    assert [p.name for p in tmp_path.iterdir()] == [results.RESULT_FILE]


def test_other_schema_versions_are_refused(tmp_path):
    path = tmp_path / results.RESULT_FILE
    path.write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(ValueError, match="schema_version"):
        results.load(path)
