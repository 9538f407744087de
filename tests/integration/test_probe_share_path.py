"""`make probe` with a compute share walks the real path (parent -> native reference worker
-> backend worker -> group record -> console and MLflow) with stand-ins where the GPU would
be: NVML lists one H200, the HAMi-core library is a gcc-built stub, and in the workers the
probe's device measurements come from a stand-in GPU whose limiter does not engage, as
HAMi-core's did not on the first H200 run (sm_limit=50 -> 99.8% of native). The verdict
must be `invalid`, with configured vs achieved, wherever the user looks.

Before the diagnostics' contract fix (no KeyError 'workload' for a task without a workload)
every diagnostic crashed here."""

import json
import shutil

import pytest
from stand_ins import HAMI_REGION_C, build_library
from test_diagnostics_path import FAKE_PYNVML  # one GPU that NVML lists

from conftest import groups_of, results_of, run_command

# Loaded by every Python process of the test (parent and workers); it acts only once the
# worker imports the probe: then torch.cuda answers as an H200 would, and the probe's three
# device measurements are the stand-in GPU's, whose compute ignores CUDA_DEVICE_SM_LIMIT (a
# limiter that did not engage; the share that holds is tested on the group step itself).
FAKE_GPU = """
import importlib.abc
import importlib.util
import sys

TOTAL_MB = 143155.9375
NATIVE_TFLOPS = 656.8


def _gpu(probe):
    import types

    import torch

    state = {"initialized": False}
    cuda = torch.cuda
    cuda.is_available = lambda: True
    cuda.init = lambda: state.update(initialized=True)
    cuda.is_initialized = lambda: state["initialized"]
    cuda.current_device = lambda: 0
    cuda.mem_get_info = lambda *index: (int((TOTAL_MB - 512) * 2**20), int(TOTAL_MB * 2**20))
    cuda.get_device_properties = lambda *index: types.SimpleNamespace(
        name="NVIDIA H200", uuid="GPU-00000000-fake", total_memory=int(TOTAL_MB * 2**20)
    )

    probe._largest_allocation_mb = lambda torch_, upper: 142592.0
    probe._fill_until_oom = lambda torch_, limit: (142592.0, "OutOfMemoryError")
    probe._matmul_tflops = lambda torch_, seconds: NATIVE_TFLOPS  # whatever CUDA_DEVICE_SM_LIMIT says


class _AfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "runners.diagnostics.probe":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            if "worker" in sys.argv[0]:  # the parent imports the probe too, and never torch
                _gpu(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _AfterImport())
"""


@pytest.fixture
def stand_in_gpu(tmp_path):
    folder = tmp_path / "stand-ins"
    folder.mkdir()
    (folder / "pynvml.py").write_text(FAKE_PYNVML)
    (folder / "sitecustomize.py").write_text(FAKE_GPU)
    library = build_library(tmp_path / "libvgpu.so", HAMI_REGION_C)  # creates HAMi-core's region, as engaged
    return {"PYTHONPATH": str(folder)}, library


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc to build a stand-in library")
def test_a_share_that_does_not_hold_is_invalid_in_console_group_and_mlflow(results_dir, stand_in_gpu):
    env, library = stand_in_gpu
    done = run_command(
        results_dir,
        "diagnose",
        "diagnostic=probe",
        "backend=hami",
        f"backend.library={library}",
        "backend.sm_limit=50",
        "diagnostic.duration_s=1",
        env=env,
        timeout=300,
    )
    console = done.stdout + done.stderr
    assert "Traceback" not in console, console
    assert done.returncode == 1, console
    assert "compute share: configured 50%, achieved 100.0% of native -> does not hold" in console
    assert "(tolerance: at most 75.0%, 1.5x configured)" in console
    reference, probe = sorted(results_of(results_dir), key=lambda r: r.backend["name"])[::-1]
    assert (reference.backend["name"], probe.backend["name"]) == ("native", "hami")
    assert probe.status == "success"  # the worker measured; its file stays as it wrote it
    assert f"{probe.display_name}: INVALID (compute share: configured 50%" in console
    assert "INVALID: quota does not hold" in console and " success " not in console.replace("│", " ")
    [group] = groups_of(results_dir)
    assert group.kind == "probe_reference" and group.status == "invalid"
    assert group.details["compute_share_holds"] is False and group.details["native_reference_run"] == reference.run_id
    assert "does not hold" in json.loads(group.path(results_dir).read_text())["details"]["invalid_because"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    experiment = client.get_experiment_by_name("vgpu-bench").experiment_id
    [parent] = client.search_runs([experiment], filter_string="tags.kind = 'probe_reference'")
    assert parent.data.tags["status"] == "invalid" and parent.info.status == "FAILED"
    assert "achieved 100.0% of native -> does not hold" in parent.data.tags["verdict"]
    assert parent.data.metrics["compute_share_achieved"] == pytest.approx(100.0)
