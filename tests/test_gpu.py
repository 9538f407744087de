"""The native GPU path (skipped without an NVIDIA GPU)."""
import json

import pytest

from conftest import TINY, has_gpu, run_dirs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not has_gpu(), reason="needs an NVIDIA GPU")]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_native_runs_record_device_time_and_gpu_memory(cli, results_dir, precision):
    done = cli("--multirun", "model=bert,resnet50", "workload=infer,train", "backend=native",
               f"workload.precision={precision}", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    for run_dir in run_dirs(results_dir):
        result = json.loads((run_dir / "result.json").read_text())
        assert result["device"]["kind"] == "cuda" and result["backend"]["name"] == "native"
        measurement = result["measurement"]
        assert len(measurement["device_times_ms"]) == len(measurement["step_times_ms"])
        # a synchronized wall time can never be shorter than the GPU time inside it
        assert all(w >= d * 0.99 for w, d in zip(measurement["step_times_ms"], measurement["device_times_ms"]))
        sources = {m["source"] for m in result["memory"]}
        assert {"torch.cuda.max_memory_allocated", "rusage.ru_maxrss"} <= sources
        assert result["memory_peak_source"] == "torch.cuda.max_memory_allocated"
        assert result["environment"]["gpus"][0]["driver_version"]


def test_auto_picks_the_gpu(cli, results_dir):
    assert cli("model=dummy", *TINY, "tracking=none").returncode == 0
    result = json.loads((run_dirs(results_dir)[0] / "result.json").read_text())
    assert result["backend"]["name"] == "native" and result["backend"]["requested"] == "auto"
