"""Every run proves what it ran on. For each backend, a stand-in that engages and one that
does not, on a machine without a GPU: the first gives `success`, the second `invalid` with
its reason. The stand-ins are what the real layers expose to a process (a preloaded library
really mapped, a client runtime really loaded through the library path, a daemon that lists
the processes that reached it through its pipes), so the checks pass only when the worker
really got the backend's environment."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from stand_ins import CUDART_C, FAKE_MPS, HAMI_REGION_C, MPS_CLIENT_C, build_library

from conftest import TINY, results_of, run_command

needs_gcc = pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc to build stand-in libraries")


def _library(path, symbol="stand_in"):
    """A real shared library (a stand-in for libvgpu.so or a client's libcudart.so)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = path.with_suffix(".c")
    source.write_text(f"int {symbol}(void) {{ return 0; }}\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path), str(source)], check=True)
    return path


def _checks(result):
    return {c.name: c for c in result.evidence.checks}


@needs_gcc
def test_hami_engages_when_its_library_is_mapped_and_not_when_it_is_not(cli, results_dir, tmp_path):
    library = build_library(tmp_path / "hami" / "libvgpu.so", HAMI_REGION_C)
    assert cli("model=dummy", "backend=hami", f"backend.library={library}", *TINY, "label=on").returncode == 0
    # The same library, but something in between (here an LD_PRELOAD of its own) keeps it out.
    off = cli(
        "model=dummy", "backend=hami", f"backend.library={library}", *TINY, "label=off", "backend.extra_env.LD_PRELOAD="
    )
    assert off.returncode == 1 and "INVALID (not engaged: library_mapped:" in off.stderr, off.stderr
    on, invalid = sorted(results_of(results_dir), key=lambda r: r.config["label"] != "on")
    assert on.status == "success" and on.evidence.engaged and _checks(on)["library_mapped"].passed
    assert str(library) in on.environment.gpu_libraries_loaded
    assert invalid.status == "invalid" and not _checks(invalid)["library_mapped"].passed
    assert invalid.evidence.verdict.startswith("not engaged: library_mapped")
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    [run] = client.search_runs(
        [client.get_experiment_by_name("vgpu-bench").experiment_id], filter_string="tags.label = 'off'"
    )
    assert run.data.tags["status"] == "invalid" and run.data.tags["engaged"] == "false"
    assert "library_mapped" in run.data.tags["engagement"] and run.info.status == "FAILED"


@needs_gcc
def test_a_sweep_over_two_hami_quotas_gives_each_run_its_own_quota_and_region(cli, results_dir, tmp_path):
    library = build_library(tmp_path / "hami" / "libvgpu.so", HAMI_REGION_C)
    dry = cli("model=dummy", "backend=hami", f"backend.library={library}", "backend.memory_limit=1g", "dry_run=true")
    assert "CUDA_DEVICE_MEMORY_LIMIT=1024m" in dry.stdout and "runs/<run-id>/hami-shared-region.cache" in dry.stdout
    done = cli(
        "--multirun",
        "model=dummy",
        "backend=hami",
        f"backend.library={library}",
        "backend.memory_limit=1g,2048m",
        *TINY,
        "tracking=none",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = sorted(results_of(results_dir), key=lambda r: r.backend["memory_quota_mb"])
    assert [r.evidence.env["CUDA_DEVICE_MEMORY_LIMIT"] for r in results] == ["1024m", "2048m"]  # as the worker saw it
    regions = [r.evidence.env["CUDA_DEVICE_MEMORY_SHARED_CACHE"] for r in results]
    assert len(set(regions)) == 2
    for result, region in zip(results, regions):
        assert region == str(results_dir / "runs" / result.run_id / "hami-shared-region.cache")
        assert not os.path.exists(region)  # removed once its worker ended
        assert result.ok and _checks(result)["own_shared_region"].passed
        assert (
            f"limit {result.backend['memory_quota_mb'] * 2**20:.0f} bytes"
            in _checks(result)["own_shared_region"].detail
        )


@needs_gcc
@pytest.mark.parametrize(
    "stand_in, reason",
    [
        ("mapped, no region", "HAMi-core created no region at"),  # a library that never created its region
        ("-DLIMIT_SCALE=2", "limit_bytes 2147483648 (this run: 1073741824)"),  # a region holding another limit
        ("-DNO_SLOT", "not among its processes"),  # a region this worker never attached to
    ],
)
def test_a_hami_region_that_is_absent_or_not_this_runs_is_not_engaged(cli, results_dir, tmp_path, stand_in, reason):
    library = tmp_path / "hami" / "libvgpu.so"
    if stand_in.startswith("-D"):
        build_library(library, HAMI_REGION_C, stand_in)
    else:
        _library(library)
    done = cli(
        "model=dummy", "backend=hami", f"backend.library={library}", "backend.memory_limit=1g", *TINY, "tracking=none"
    )
    assert done.returncode == 1 and "own_shared_region" in done.stderr, done.stderr
    [result] = results_of(results_dir)
    region = _checks(result)["own_shared_region"]
    assert result.status == "invalid" and not region.passed and reason in region.detail, region.detail
    assert _checks(result)["library_mapped"].passed  # mapped: only the region tells


@needs_gcc
def test_vgpu_engages_when_the_client_runtime_is_the_one_loaded(cli, results_dir, tmp_path):
    client = tmp_path / "orion"
    build_library(client / "libcudart.so.12", CUDART_C)
    bundled = _library(tmp_path / "site-packages" / "nvidia" / "libcudart.so.12", "bundled_runtime")
    common = ["model=dummy", "backend=vgpu", f"backend.client_dir={client}", *TINY, "tracking=none"]
    # Loaded by name, as frameworks load their CUDA runtime: the library path puts the client first.
    assert cli(*common, "label=by-name", "backend.extra_env.VGPU_BENCH_DUMMY_LOAD=libcudart.so.12").returncode == 0
    # Loaded by absolute path, as a framework with its own bundled runtime does: silently native.
    native = cli(*common, "label=bundled", f"backend.extra_env.VGPU_BENCH_DUMMY_LOAD={bundled}")
    assert native.returncode == 1 and "client_runtime_mapped" in native.stderr
    by_name, own = sorted(results_of(results_dir), key=lambda r: r.config["label"] != "by-name")
    assert by_name.status == "success" and by_name.evidence.libraries["libcudart"] == str(client / "libcudart.so.12")
    assert own.status == "invalid" and str(bundled) in _checks(own)["client_runtime_mapped"].detail


@needs_gcc
def test_vgpu_memory_size_is_checked_against_what_the_client_runtime_reports(cli, results_dir, tmp_path):
    client = tmp_path / "orion"
    build_library(client / "libcudart.so.12", CUDART_C)  # reports ORION_GMEM as its device's total
    common = ["model=dummy", "backend=vgpu", f"backend.client_dir={client}", "backend.gmem_mib=2048", *TINY]
    load = "backend.extra_env.VGPU_BENCH_DUMMY_LOAD=libcudart.so.12"
    assert cli(*common, "tracking=none", "label=applied", load).returncode == 0
    # A client that reports another size (the server's default, not the one asked for).
    lied = cli(*common, "tracking=none", "label=other", load, "backend.extra_env.STAND_IN_TOTAL_MIB=4096")
    assert lied.returncode == 1 and "gmem_is_total" in lied.stderr, lied.stderr
    applied, other = sorted(results_of(results_dir), key=lambda r: r.config["label"] != "applied")
    assert applied.status == "success" and applied.evidence.device["memory_total_seen_mb"] == 2048
    assert _checks(applied)["gmem_is_total"].passed and applied.evidence.device["name"] == "Stand-in vGPU"
    assert (
        other.status == "invalid" and "4096 MiB against backend.gmem_mib 2048" in _checks(other)["gmem_is_total"].detail
    )


@needs_gcc
@pytest.mark.xdist_group("mps")  # an MPS daemon is machine-wide: one such test at a time
def test_mps_engages_when_the_daemon_lists_the_worker_among_its_clients(cli, results_dir, fake_bin, tmp_path):
    fake_bin("nvidia-cuda-mps-control", FAKE_MPS)
    client = build_library(tmp_path / "libcuda-mps-client.so", MPS_CLIENT_C)  # reaches the daemon on load
    done = cli(
        "model=dummy", "backend=mps", *TINY, "tracking=none", f"backend.extra_env.VGPU_BENCH_DUMMY_LOAD={client}",
        env=fake_bin.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [attached] = results_of(results_dir)
    # The one pid the daemon read from its pipe (sent by the client library in the worker) is
    # the pid the worker checked for.
    [pid] = Path(f"{fake_bin.log}.clients").read_text().split()
    assert attached.status == "success" and _checks(attached)["mps_client"].passed
    assert f"pid {pid} is among the daemon's clients [{pid}]" in _checks(attached)["mps_client"].detail


@pytest.mark.xdist_group("mps")  # an MPS daemon is machine-wide: one such test at a time
def test_an_mps_client_that_never_reached_the_daemon_is_invalid(cli, results_dir, fake_bin):
    # The worker has the daemon's pipe directory in its environment, and never connects.
    fake_bin("nvidia-cuda-mps-control", FAKE_MPS)
    done = cli("model=dummy", "backend=mps", *TINY, "tracking=none", env=fake_bin.env)
    assert done.returncode == 1 and "is not among the daemon's clients" in done.stderr
    [result] = results_of(results_dir)
    assert result.status == "invalid" and not _checks(result)["mps_client"].passed
    assert _checks(result)["environment_applied"].passed  # the environment alone decides nothing


@needs_gcc
def test_require_engagement_false_keeps_the_run_with_a_warning(cli, results_dir, tmp_path):
    library = _library(tmp_path / "hami" / "libvgpu.so")
    done = cli(
        "model=dummy",
        "backend=hami",
        f"backend.library={library}",
        *TINY,
        "tracking=none",
        "backend.extra_env.LD_PRELOAD=",
        "backend.require_engagement=false",
    )
    assert done.returncode == 0 and "warning, engagement not required" in done.stderr, done.stderr
    [result] = results_of(results_dir)
    assert result.status == "success" and not result.evidence.engaged and not result.evidence.required


def test_the_cpu_backend_proves_it_hid_the_gpus(cli, results_dir):
    assert cli("model=dummy", "backend=cpu", *TINY, "tracking=none").returncode == 0
    [result] = results_of(results_dir)
    assert result.evidence.engaged and result.evidence.env["CUDA_VISIBLE_DEVICES"] == ""
    assert {c.name for c in result.evidence.checks} == {"environment_applied", "no_gpu"}


@needs_gcc
def test_a_cpu_run_whose_runtime_still_reached_a_gpu_is_invalid(cli, results_dir, tmp_path):
    # A CUDA runtime that ignores the hidden devices (the stand-in reports one all the same).
    runtime = build_library(tmp_path / "cuda" / "libcudart.so.12", CUDART_C)
    done = cli(
        "model=dummy", "backend=cpu", *TINY, "tracking=none", f"backend.extra_env.VGPU_BENCH_DUMMY_LOAD={runtime}",
        "backend.extra_env.STAND_IN_IGNORE_HIDDEN=1",
    )  # fmt: skip
    assert done.returncode == 1 and "no_gpu" in done.stderr, done.stderr
    [result] = results_of(results_dir)
    assert result.status == "invalid" and "Stand-in vGPU" in _checks(result)["no_gpu"].detail


@needs_gcc
def test_comparisons_leave_invalid_runs_out_and_say_so(cli, results_dir, tmp_path):
    library = _library(tmp_path / "hami" / "libvgpu.so")
    assert cli("model=dummy", "backend=cpu", *TINY, "label=base").returncode == 0
    assert (
        cli(
            "model=dummy",
            "backend=hami",
            f"backend.library={library}",
            *TINY,
            "label=cand",
            "backend.extra_env.LD_PRELOAD=",
        ).returncode
        == 1
    )
    done = run_command(results_dir, "analyze", "compare", "baseline=label=base", "candidate=label=cand")
    assert done.returncode == 0, done.stderr
    assert "no pairs" in done.stdout and "left out, invalid" in done.stdout and "library_mapped" in done.stdout


@needs_gcc
def test_a_runtime_s_device_is_read_from_the_cuda_runtime_it_loaded(tmp_path):
    """ONNX Runtime's and MNN's GPU: asked of the libcudart mapped into the process (its
    cudaMemGetInfo, what HAMi-core or a vGPU client reports), never NVML's GPU 0."""
    import json
    import sys

    runtime = build_library(tmp_path / "libcudart.so.12", CUDART_C)
    script = (
        "import ctypes, json, sys; from runners.worker.frameworks.ort_runtime import OnnxRuntimeFramework as F\n"
        "before = F('cuda', 'fp32', 1).gpu_of_provider('CUDAExecutionProvider')\n"
        "ctypes.CDLL(sys.argv[1])  # as the provider loads its runtime\n"
        "print(json.dumps([before, F('cuda', 'fp32', 1).gpu_of_provider('CUDAExecutionProvider')]))"
    )
    env = {**os.environ, "ORION_GMEM": "3072", "CUDA_VISIBLE_DEVICES": "0"}
    done = subprocess.run([sys.executable, "-c", script, str(runtime)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    before, after = json.loads(done.stdout.splitlines()[-1])
    assert before["name"] is None and "no CUDA runtime" in before["error"]  # nothing loaded: nothing to pass on
    assert after["memory_total_seen_mb"] == 3072 and after["name"] == "Stand-in vGPU"
    assert after["uuid"] == "GPU-abababab-abab-abab-abab-abababababab" and str(runtime) in after["source"]
