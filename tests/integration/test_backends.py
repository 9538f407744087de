"""Virtualized backends on a machine without a GPU: stand-in runtimes and daemons."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stand_ins import CUDART_C, FAKE_MPS, FAKE_NVIDIA_SMI, HAMI_REGION_C, MPS_CLIENT_C, build_library

from runners.backends import create
from runners.backends.hami import HamiConfig
from runners.backends.mig import MigConfig
from runners.backends.mps import MpsConfig
from runners.backends.vgpu import VgpuConfig
from runners.config import parse_size_mib
from runners.contracts import RESULT_FILE, Result
from runners.errors import UsageError

from conftest import TINY, logged_runs, run_command, run_dirs


@pytest.fixture
def client_dir(tmp_path):
    """A stand-in client: a CUDA runtime library whose device has ORION_GMEM MiB (stand_ins.CUDART_C)."""
    if not shutil.which("gcc"):
        pytest.skip("needs gcc to build a stand-in client runtime")
    path = tmp_path / "orion"
    build_library(path / "libcudart.so.12", CUDART_C)
    return path


def _only_result(results_dir):
    [run_dir] = run_dirs(results_dir)
    return Result.load(run_dir / RESULT_FILE)


# -- environment composition ------------------------------------------------------------


def test_vgpu_puts_the_client_first_and_maps_its_knobs(tmp_path, monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/other")
    backend = create(
        VgpuConfig(
            name="vgpu",
            client_dir="/opt/orion",
            vgpus=2,
            gmem_mib=8192,
            controller="10.0.0.5:9123",
            extra_env={"ORION_RATIO": "50"},
        ),
        tmp_path,
    )
    env = backend.environment()
    assert env["LD_LIBRARY_PATH"] == "/opt/orion:/opt/other"
    assert (env["ORION_VGPU"], env["ORION_GMEM"], env["ORION_CONTROLLER"], env["ORION_RATIO"]) == (
        "2",
        "8192",
        "10.0.0.5:9123",
        "50",
    )
    assert backend.memory_quota_mb() == 8192


def test_hami_preloads_its_library_and_sets_limits(tmp_path, monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    backend = create(HamiConfig(name="hami", library="/x/libvgpu.so", memory_limit="4g", sm_limit=30), tmp_path)
    env = backend.environment()
    assert env == {"LD_PRELOAD": "/x/libvgpu.so", "CUDA_DEVICE_MEMORY_LIMIT": "4096m", "CUDA_DEVICE_SM_LIMIT": "30"}
    assert backend.memory_quota_mb() == 4096 and backend.compute_share() == 30
    # Each run its own shared region, in its own folder: HAMi-core fixes the limits when it is created.
    assert backend.run_environment(tmp_path / "run-1") == {
        "CUDA_DEVICE_MEMORY_SHARED_CACHE": str(tmp_path / "run-1" / "hami-shared-region.cache")
    }


def test_mps_clients_share_the_suites_own_pipe_directory(tmp_path):
    backend = create(MpsConfig(name="mps", sm_percent=25, memory_limit="4G"), tmp_path)
    env = backend.environment()
    # Logs in one folder per host, process and command: hosts sharing a results folder never meet.
    instance = Path(env["CUDA_MPS_LOG_DIRECTORY"]).parent
    assert Path(env["CUDA_MPS_LOG_DIRECTORY"]).name == "log" and instance.parent == tmp_path / "backends" / "mps"
    assert instance.name.startswith(f"{__import__('socket').gethostname()}-{os.getpid()}-")
    # Pipes in a short folder of this command's own (a Unix socket path holds 107 bytes).
    pipe = env["CUDA_MPS_PIPE_DIRECTORY"]
    assert Path(pipe).name.startswith(f"vb-mps-{os.getpid()}-") and not pipe.startswith(str(tmp_path))
    assert create(MpsConfig(name="mps"), tmp_path).environment()["CUDA_MPS_PIPE_DIRECTORY"] != pipe
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=4G"
    assert backend.memory_quota_mb() == 4096


def test_mig_selects_an_instance_by_index_or_uuid(tmp_path, fake_bin, monkeypatch):
    fake_bin("nvidia-smi", FAKE_NVIDIA_SMI)
    monkeypatch.setenv("PATH", fake_bin.env["PATH"])
    by_index = create(MigConfig(name="mig", instance="1"), tmp_path)
    by_index.preflight()
    assert by_index.environment()["CUDA_VISIBLE_DEVICES"] == "MIG-2222-bbbb"
    assert (
        create(MigConfig(name="mig", instance="MIG-1111-aaaa"), tmp_path).environment()["CUDA_VISIBLE_DEVICES"]
        == "MIG-1111-aaaa"
    )
    with pytest.raises(UsageError, match=r"instance=7 is no MIG instance here. Valid: 0 \(3g.40gb"):
        create(MigConfig(name="mig", instance="7"), tmp_path).preflight()


@pytest.mark.parametrize("text, mib", [("4g", 4096), ("4096m", 4096), ("4G", 4096), ("512M", 512), ("1024", 1024)])
def test_sizes_are_read_as_mps_writes_them(text, mib):
    assert parse_size_mib(text, "k") == mib


@pytest.mark.parametrize("text", ["lots", "4x", "", "0m"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ValueError, match="must be"):
        parse_size_mib(text, "backend.memory_limit")


# -- through the command line -------------------------------------------------------------


def test_dry_run_shows_the_plan_and_starts_nothing(cli, results_dir):
    done = cli("model=bert", "backend=vgpu", "dry_run=true", "backend.extra_env.ORION_TOKEN=s3cret")
    assert done.returncode == 0, done.stderr
    env = dict(line.strip().split("=", 1) for line in done.stdout.splitlines() if line.startswith("    "))
    assert env["LD_LIBRARY_PATH"].startswith("/usr/lib/orion")
    assert env["ORION_VGPU"] == "1" and "ORION_GMEM" not in env  # the whole GPU unless a slice is asked for
    assert env["ORION_TOKEN"] == "***" and "s3cret" not in done.stdout
    assert "preflight: FAILS: backend 'vgpu' needs the vGPU client runtime" in done.stdout
    assert "-m runners.worker" in done.stdout
    assert not run_dirs(results_dir) and not logged_runs(results_dir)


def test_dry_run_shows_the_daemon_start_and_stop(cli):
    done = cli("backend=mps", "dry_run=true", "backend.sm_percent=50")
    assert "daemon start:" in done.stdout and "nvidia-cuda-mps-control -d" in done.stdout
    assert "daemon stop: echo quit |" in done.stdout and "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=50" in done.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["backend=vgpu"], "backend 'vgpu' needs the vGPU client runtime, but /usr/lib/orion holds no libcudart.so*"),
        (["backend=hami"], "backend 'hami' needs HAMi-core's library"),
        (["backend=mps", "backend.control=/nonexistent/mps-control"], "backend 'mps' needs /nonexistent/mps-control"),
        (["backend=mig"], "backend 'mig' found no MIG instance"),
        (["backend=cpu", "backend.gmem_mib=1"], "unknown key 'backend.gmem_mib'"),
        (["backend=mps", "backend.sm_percent=150"], "backend.sm_percent must be a percentage in 1..100"),
        (["backend=vgpu", "backend.controller=nohost"], "backend.controller must be host:port"),
        (["workload=probe", "backend=cpu"], "unknown workload 'probe'"),
        (["tenants=0"], "tenants must be >= 1"),
        (["backend=hami", "backend.memory_limit=1024"], "HAMi-core reads a bare number as bytes"),
        (["backend=hami", "backend.memory_limit=1.5g"], "backend.memory_limit must be a whole number of MiB"),
        (["backend=hami", "backend.memory_limit=4gb"], "written <integer><k|m|g>"),
        (["backend=vgpu", "backend.compute_share=0"], "backend.compute_share must be a percentage in 1..100"),
    ],
)
def test_missing_runtimes_and_bad_knobs_are_one_line_and_exit_2(cli, results_dir, args, expected):
    done = cli(*args, env={"PATH": "/usr/bin:/bin"} if "backend=mig" in args else None)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and expected in done.stderr and "Traceback" not in done.stderr
    assert not run_dirs(results_dir)


def test_vgpu_runs_with_a_client_directory_and_records_it(cli, results_dir, client_dir):
    done = cli(
        "model=dummy",
        "backend=vgpu",
        f"backend.client_dir={client_dir}",
        "backend.gmem_mib=2048",
        "backend.extra_env.ORION_SECRET_KEY=k",
        "backend.extra_env.VGPU_BENCH_DUMMY_LOAD=libcudart.so.12",  # as a framework loads its runtime
        *TINY,
        "tracking=none",
    )
    assert done.returncode == 0, done.stderr
    result = _only_result(results_dir)
    assert result.backend["name"] == "vgpu" and result.backend["version"] == "libcudart.so.12"
    assert result.evidence.libraries["libcudart"] == str(client_dir / "libcudart.so.12")
    env = result.evidence.env  # as the worker saw them
    assert env["LD_LIBRARY_PATH"].split(":")[0] == str(client_dir) and env["ORION_GMEM"] == "2048"
    assert env["ORION_SECRET_KEY"] == "***"
    assert "=k" not in (run_dirs(results_dir)[0] / "job.json").read_text()


# -- the MPS daemon's lifecycle with a stand-in control program -----------------------------


def _mps_calls(fake_bin) -> list[str]:
    return fake_bin.log.read_text().splitlines() if fake_bin.log.exists() else []


@pytest.mark.xdist_group("mps")  # an MPS daemon is machine-wide: one such test at a time
@pytest.mark.parametrize(
    "fault, exit_code, error", [("none", 0, None), ("raise", 1, "RuntimeError"), ("hang", 1, "Timeout")]
)
def test_mps_daemon_is_started_and_always_stopped(cli, results_dir, fake_bin, fault, exit_code, error, tmp_path):
    fake_bin("nvidia-cuda-mps-control", FAKE_MPS)
    client = build_library(tmp_path / "libcuda-mps-client.so", MPS_CLIENT_C)  # the worker reaches the daemon
    done = cli(
        "model=dummy",
        "backend=mps",
        "backend.sm_percent=50",
        *TINY,
        "tracking=none",
        "timeout_s=3",
        f"backend.extra_env.VGPU_BENCH_DUMMY_FAULT={fault}",
        f"backend.extra_env.VGPU_BENCH_DUMMY_LOAD={client}",
        env=fake_bin.env,
    )
    assert done.returncode == exit_code, done.stderr
    result = _only_result(results_dir)
    pipe = result.backend["env"]["CUDA_MPS_PIPE_DIRECTORY"]
    assert Path(pipe).name.startswith("vb-mps-") and not Path(pipe).exists()  # removed with the daemon
    assert result.backend["env"]["CUDA_MPS_LOG_DIRECTORY"].startswith(str(results_dir / "backends" / "mps"))
    calls = _mps_calls(fake_bin)  # started, asked by the worker for its clients (whatever it did), stopped
    assert calls[0] == f"args=[-d] stdin=[] pipe=[{pipe}]" and calls[-1] == f"args=[] stdin=[quit] pipe=[{pipe}]"
    assert (result.error.type if result.error else None) == error


@pytest.mark.xdist_group("mps")  # an MPS daemon is machine-wide: one such test at a time
def test_mps_daemon_is_stopped_on_ctrl_c(results_dir, fake_bin):

    from conftest import REPO

    fake_bin("nvidia-cuda-mps-control", FAKE_MPS)
    env = {**os.environ, **fake_bin.env, "VGPU_BENCH_RESULTS": str(results_dir)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runners.cli.bench",
            "model=dummy",
            "backend=mps",
            "tracking=none",
            "backend.extra_env.VGPU_BENCH_DUMMY_FAULT=hang",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        # A runner started as a background job without job control ignores SIGINT,
        # and Python keeps an ignored SIGINT ignored: give the command a terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not list((results_dir / "runs").glob("*/worker.log")) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert _mps_calls(fake_bin)[-1].startswith("args=[] stdin=[quit]")
    worker = subprocess.run(["pgrep", "-f", f"runners.worker {results_dir}"], capture_output=True, text=True)
    assert worker.stdout == ""  # no worker left behind


@pytest.mark.xdist_group("mps")  # an MPS daemon is machine-wide: one such test at a time
def test_a_foreign_mps_daemon_is_refused(cli, results_dir, fake_bin):
    fake_bin("nvidia-cuda-mps-control", FAKE_MPS)
    foreign = subprocess.Popen(["bash", "-c", "exec -a nvidia-cuda-mps-control sleep 60"])
    try:
        time.sleep(0.3)
        done = cli("model=dummy", "backend=mps", *TINY, env=fake_bin.env)
    finally:
        foreign.kill()
        foreign.wait()
    assert done.returncode == 2
    assert f"an MPS daemon the suite did not start already runs (pid {foreign.pid}" in done.stderr
    assert _mps_calls(fake_bin) == [] and not run_dirs(results_dir)


@pytest.mark.skipif(not __import__("shutil").which("gcc"), reason="needs gcc to build a stand-in library")
def test_hami_library_is_really_preloaded_into_the_worker(cli, results_dir, tmp_path):
    library = build_library(tmp_path / "libvgpu.so", HAMI_REGION_C)
    done = cli(
        "model=dummy",
        "backend=hami",
        f"backend.library={library}",
        "backend.memory_limit=2g",
        "backend.sm_limit=50",
        *TINY,
        "tracking=none",
    )
    assert done.returncode == 0, done.stderr
    result = _only_result(results_dir)
    assert str(library) in result.environment.gpu_libraries_loaded
    assert result.evidence.env["CUDA_DEVICE_MEMORY_LIMIT"] == "2048m"  # HAMi-core's own syntax, as the worker saw it
    assert result.ok and result.evidence.engaged
    assert (result.backend["memory_quota_mb"], result.backend["compute_share"]) == (2048, 50)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["diagnostic=probe", "backend=cpu"], "diagnostic=probe measures a GPU backend"),
        (["diagnostic=microbench", "backend=cpu"], "diagnostic=microbench measures a GPU backend"),
        (["diagnostic=quota", "backend=cpu"], "unknown diagnostic 'quota'"),
        (["diagnostic=probe", "model=bert"], "unknown key 'model'"),
    ],
)
def test_diagnostics_refuse_what_they_cannot_measure_in_one_line(results_dir, args, expected):
    done = run_command(results_dir, "diagnose", *args, timeout=120)
    assert done.returncode == 2 and expected in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not run_dirs(results_dir)
