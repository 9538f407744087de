"""Where the data lives (workload.inputs), when the host waits (workload.sync), and the
start-up breakdown, on real tiny models of both frameworks (CPU)."""

import statistics

import pytest

from runners.worker.startup import PHASES

from conftest import TINY, results_of

# batch 2 of 32x32 RGB float32 images (24,576 bytes) and their labels: int64 for torchvision,
# int32 for Keras; 10-class float32 logits come back (80 bytes)
INPUT_BYTES = {"resnet50": 24_576 + 2 * 8, "keras_mobilenet_v2": 24_576 + 2 * 4}


@pytest.mark.slow
def test_host_and_loader_inputs_count_what_each_step_moves(cli, results_dir):
    models = ",".join(INPUT_BYTES)
    done = cli("--multirun", f"model={models}", "workload=infer,train", "backend=cpu", "tracking=none", *TINY,
               "workload.sync_every=2", timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = {(r.model.name, r.workload): r for r in results_of(results_dir)}
    assert len(results) == 4 and all(r.ok for r in results.values()), [r.error for r in results.values()]
    for (model, workload), result in results.items():
        expected_inputs = "host" if workload == "infer" else "loader"  # each scenario's default
        assert result.measurement.inputs == expected_inputs, (model, workload)
        assert result.value("to_device_bytes_per_step") == INPUT_BYTES[model], (model, workload)
        # images and labels in; inference also brings its logits back
        assert result.value("copies_per_step") == (3 if workload == "infer" else 2), (model, workload)
        assert result.value("to_host_bytes_per_step") == (80 if workload == "infer" else 0), (model, workload)
        assert not result.measurement.pinned  # pinning needs a CUDA device: not claimed on the CPU


def test_device_inputs_move_nothing_and_window_sync_reports_no_percentiles(cli, results_dir):
    done = cli("model=resnet50", "workload=train", "backend=cpu", "tracking=none", *TINY,
               "workload.inputs=device", "workload.sync_every=3", "workload.min_steps=4")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = results_of(results_dir)
    m = result.measurement
    assert (m.inputs, m.sync, m.steps_per_time, m.steps, len(m.step_times_ms)) == ("device", "window", 3, 6, 2)
    assert result.value("to_device_bytes_per_step") is None and result.value("latency_ms_p50") is None
    assert result.value("latency_ms_mean") > 0 and result.value("throughput") > 0
    phases = [result.value(f"startup_{phase}_s") for phase in PHASES]
    assert all(seconds is not None and seconds >= 0 for seconds in phases), phases
    assert sum(phases) <= result.value("time_to_first_step_s") + 1e-6
    assert result.value("startup_import_s") > result.value("startup_to_device_s")  # torch's import is no no-op


def test_generation_latencies_ignore_the_profiled_generations(cli, results_dir):
    done = cli("model=gpt2", "workload=generate", "backend=cpu", "tracking=none", *TINY, "workload.new_tokens=4",
               "profile=true", "profile_steps=2")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = results_of(results_dir)
    generations = result.details["generations"]
    assert generations["measured"] == result.measurement.steps == len(generations["ttft_ms"])
    assert result.details["profile"]["steps"] == 2
    assert result.value("ttft_ms_p50") == pytest.approx(statistics.median(generations["ttft_ms"]))
