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


def _gpu_count() -> int:
    from runners.nvml import visible_gpus

    return len(visible_gpus()[0])


@pytest.mark.parametrize("ranks", [1, 2])
def test_data_parallel_training_puts_each_rank_on_its_own_gpu(cli, results_dir, ranks):
    if ranks > _gpu_count():
        pytest.skip(f"needs {ranks} GPUs")
    done = cli("model=bert", "workload=train_ddp", "backend=native", f"workload.processes={ranks}", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = [r for r in results_of(results_dir) if r.config["workload"]["processes"] == ranks]
    assert run.ok, run.error
    assert run.details["ddp"]["per_rank_device"] == [f"cuda:{i}" for i in range(ranks)]


def test_host_inputs_move_the_bytes_they_count(cli, results_dir):
    done = cli("model=resnet50", "backend=native", *TINY, "workload.pinned=true", "profile=true", "profile_steps=2")
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = results_of(results_dir)
    assert result.measurement.inputs == "host" and result.measurement.pinned
    # what the profiler saw cross to and from the device is what the feed counted
    assert result.value("prof_h2d_bytes") == pytest.approx(result.value("to_device_bytes_per_step"), rel=0.01)
    assert result.value("prof_d2h_bytes") == pytest.approx(result.value("to_host_bytes_per_step"), rel=0.01)


def test_energy_and_the_start_up_breakdown_on_the_gpu(cli, results_dir):
    done = cli("model=resnet50", "backend=native", *TINY, "workload.min_duration_s=2")
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = results_of(results_dir)
    energy = result.details["energy"]
    if "missing" in energy:
        pytest.skip(f"this GPU has no readable energy counter: {energy['missing']}")
    assert result.value("energy_j_per_step") > 0 and result.value("power_w_mean") > 0
    assert result.value("startup_device_init_s") > 0  # a CUDA context is never free


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
