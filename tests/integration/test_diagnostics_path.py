"""`make probe` and `make microbench` walk the real path (parent -> worker -> result file)
on a machine without a GPU. A fake NVML device list lets planning accept backend=native;
the worker's torch then finds no CUDA device, and the run ends in one recorded `failed`
result that says so: never a traceback on the console, never the CPU named as the device.
(On the first GPU run every diagnostic crashed with KeyError 'workload' instead.)"""

import json

import pytest

from conftest import results_of, run_command, run_dirs

# A stand-in for nvidia-ml-py, first on the path of the parent and of its worker: one GPU
# that NVML lists and that no CUDA runtime in this process can reach.
FAKE_PYNVML = """
class NVMLError(Exception):
    pass


class _Memory:
    total = 141 * 2**30
    used = 0
    free = total


def nvmlInit():
    pass


def nvmlShutdown():
    pass


def nvmlDeviceGetCount():
    return 1


def nvmlDeviceGetHandleByIndex(index):
    return index


def nvmlDeviceGetHandleByUUID(uuid):
    return 0


def nvmlDeviceGetName(handle):
    return "NVIDIA H200"


def nvmlDeviceGetUUID(handle):
    return "GPU-00000000-fake"


def nvmlDeviceGetMemoryInfo(handle):
    return _Memory()


def nvmlSystemGetDriverVersion():
    return "580.159"


def nvmlSystemGetCudaDriverVersion():
    return 13000
"""


@pytest.fixture
def fake_gpu_list(tmp_path):
    folder = tmp_path / "fake-nvml"
    folder.mkdir()
    (folder / "pynvml.py").write_text(FAKE_PYNVML)
    return {"PYTHONPATH": str(folder)}


@pytest.mark.parametrize("diagnostic", ["probe", "microbench"])
def test_a_diagnostic_ends_in_one_recorded_result(results_dir, fake_gpu_list, diagnostic):
    done = run_command(
        results_dir,
        "diagnose",
        f"diagnostic={diagnostic}",
        "backend=native",
        "tracking=none",
        env=fake_gpu_list,
        timeout=300,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 1, console
    assert "Traceback" not in console and "KeyError" not in console, console
    [run_dir] = run_dirs(results_dir)
    [result] = results_of(results_dir)
    assert (result.task, result.workload, result.model) == (diagnostic, diagnostic, None)
    assert result.status == "failed" and result.error.type == "RuntimeError", result.error
    assert "CUDA device" in result.error.message and "worker sees none" in result.error.message
    assert json.loads((run_dir / "launch.json").read_text())["exit_code"] == 1  # the worker recorded it itself
    assert result.config["diagnostic"]["name"] == diagnostic and len(result.config_hash) == 16
    # NVML listed a GPU, torch in the worker reached none: no device observed, and never the CPU's name.
    assert result.environment.gpus and result.environment.gpus[0]["name"] == "NVIDIA H200"
    assert result.device.kind == "cuda" and result.device.name is None
    assert result.environment.cpu_model and result.environment.cpu_model != result.device.name
    assert result.display_name in console and "failed" in console.lower()


def test_a_diagnostic_whose_worker_never_starts_is_recorded_by_the_parent(results_dir, fake_gpu_list):
    """A worker that dies before it can write anything (here its Python cannot even start):
    the parent's own record of the diagnostic stands in for it, once."""
    done = run_command(
        results_dir,
        "diagnose",
        "diagnostic=microbench",
        "backend=native",
        "tracking=none",
        "backend.extra_env.PYTHONHOME=/nonexistent",
        env=fake_gpu_list,
        timeout=300,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in console, console
    [result] = results_of(results_dir)
    assert (result.status, result.error.type, result.workload) == ("failed", "WorkerExited", "microbench")
    assert result.task == "microbench" and result.device.name is None
