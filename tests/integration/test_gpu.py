"""The native GPU path (skipped without an NVIDIA GPU)."""

import pytest

from conftest import TINY, has_gpu, results_of

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not has_gpu(), reason="needs an NVIDIA GPU")]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_native_runs_record_device_time_and_gpu_memory(cli, results_dir, precision):
    done = cli(
        "--multirun",
        "model=bert,resnet50",
        "workload=infer,train",
        "backend=native",
        f"workload.precision={precision}",
        *TINY,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for result in results_of(results_dir):
        assert result.device.kind == "cuda" and result.backend["name"] == "native"
        measurement = result.measurement
        assert len(measurement.device_times_ms) == len(measurement.step_times_ms)
        # a synchronized wall time can never be shorter than the GPU time inside it
        assert all(w >= d * 0.99 for w, d in zip(measurement.step_times_ms, measurement.device_times_ms))
        sources = {m.source for m in result.memory}
        assert {"torch.cuda.max_memory_allocated", "rusage.ru_maxrss"} <= sources
        assert result.memory_peak_source == "torch.cuda.max_memory_allocated"
        assert result.environment.gpus[0]["driver_version"]


def test_auto_picks_the_gpu(cli, results_dir):
    assert cli("model=dummy", *TINY, "tracking=none").returncode == 0
    [result] = results_of(results_dir)
    assert result.backend["name"] == "native" and result.backend["requested"] == "auto"


def _mps_available() -> bool:
    import shutil

    from runners.backends.mps import running_mps_daemons

    return bool(shutil.which("nvidia-cuda-mps-control")) and not running_mps_daemons()


needs_mps = pytest.mark.skipif(not (has_gpu() and _mps_available()), reason="needs MPS on an idle GPU")


@needs_mps
def test_mps_shares_slow_bert_training_monotonically(cli, results_dir):
    done = cli(
        "--multirun",
        "model=bert",
        "workload=train",
        "backend=mps",
        "backend.sm_percent=100,50,25",
        *TINY,
        "model.size=base",
        "workload.batch_size=32",
        "workload.min_duration_s=3",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    by_share = {}
    for result in results_of(results_dir):
        by_share[result.backend["compute_share"]] = result.value("throughput")
    assert by_share[100.0] > by_share[25.0]


@needs_mps
@pytest.mark.parametrize("tenants", [2, 4])
def test_tenants_under_mps(cli, results_dir, tenants):
    done = cli("model=bert", "backend=mps", f"tenants={tenants}", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]


@needs_mps
def test_memory_probe_sees_the_mps_limit(results_dir):
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = {**os.environ, "VGPU_BENCH_RESULTS": str(results_dir)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runners.cli.diagnose",
            "diagnostic=probe",
            "backend=mps",
            "backend.memory_limit=4G",
            "diagnostic.duration_s=3",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = results_of(results_dir)
    probe = result.details["probe"]
    assert probe["memory_quota_mb"] == 4096
    assert probe["filled_before_failure_mb"] <= 4096 * 1.05 and probe["fill_outcome"] == "OutOfMemoryError"
