"""runtime=onnxruntime|mnn on the CPU: every covered zoo model exported and run on each runtime
(tiny presets), parity with the PyTorch reference through `make parity` (passing, and failing
for perturbed weights), export + MNN conversion + a run with no network at all, and a requested
GPU provider or backend that cannot run: refused in one line, or the run is invalid."""

import os
import shutil
import sys

import pytest

from conftest import TINY, results_of, run_command

NONE = ["tracking=none"]
RESNET = ["model=resnet50", *TINY]
# What the issue asks each runtime to take (the entries may add more, never fewer).
COVERAGE = {
    "onnxruntime": ["resnet50", "mobilenet_v3_large", "efficientnet_b0", "vit_b_16", "bert", "gpt2"],
    "mnn": ["resnet50", "mobilenet_v3_large", "bert"],
}


def _checks(result):
    return {c.name: c for c in result.evidence.checks}


@pytest.mark.slow
@pytest.mark.mnn_in_process
def test_every_covered_tiny_model_runs_on_each_runtime_and_matches_pytorch(tmp_path):
    """The worker's own adapters in one process (a worker each would cost an import of torch
    per model): export, conversion, inference steps, and the outputs against PyTorch's."""
    import numpy as np
    import torch

    import zoo
    from runners.analysis.parity import compare_arrays
    from runners.config import RuntimeConfig, WorkloadConfig
    from runners.worker.frameworks import frameworks

    shape, workload = zoo.InputShape(seq_len=16, image_size=32), WorkloadConfig(batch_size=2)
    for runtime, models in COVERAGE.items():
        assert set(models) <= {n for n in zoo.list() if runtime in zoo.get(n).runtimes()}, runtime
    for name in COVERAGE["onnxruntime"]:
        entry = zoo.get(name)("tiny")
        torch.manual_seed(0)
        reference = entry.build(shape).eval()
        with torch.no_grad():  # torchvision zero-initializes ViT's head: its logits would be 0 for any input
            for p in reference.parameters():
                if not p.any():
                    p.normal_(0, 0.02)
        weights = tmp_path / f"{name}.pt"  # the export loads them as a user's checkpoint (model.weights)
        torch.save(reference.state_dict(), weights)
        with torch.inference_mode():
            expected = entry.forward(reference, entry.make_batch(2, shape, 0)).float().numpy()
        for runtime in (r for r in COVERAGE if name in COVERAGE[r]):
            framework = frameworks.get(runtime)("cpu", "fp32", 1, weights=str(weights))
            framework.runtime, framework.exports_dir = RuntimeConfig(name=runtime), tmp_path / "exports"
            step = framework.infer_step(entry, workload, shape, 0)
            outputs = step()
            step()
            assert framework.traffic.steps == 2 and framework.traffic.to_host_bytes > 0
            assert [c.passed for c in framework.runtime_checks()] == [True], (name, framework.runtime_checks())
            check = compare_arrays("outputs", expected, np.asarray(outputs[0]), "fp32")
            print(f"{runtime} {name}: max abs err {check.max_abs_err:.3g}, rel {check.max_rel_err:.3g}")
            assert check.passed and check.max_rel_err < 1e-4, (runtime, name, check)
    # One export per model: MNN converted the files ONNX Runtime ran.
    assert len(list((tmp_path / "exports").glob("*/model.onnx"))) == len(COVERAGE["onnxruntime"])
    assert len(list((tmp_path / "exports").glob("*/model.mnn"))) == len(COVERAGE["mnn"])


def test_a_model_the_exporter_cannot_take_fails_naming_the_operator(tmp_path):
    import torch

    import zoo
    from runners.config import RuntimeConfig
    from runners.worker.frameworks.exported import ExportError, onnx_export
    from runners.worker.frameworks.ort_runtime import OnnxRuntimeFramework

    class Entry:  # a model with an operator that has no ONNX function (eigenvalues)
        name, size, inputs = "eigen", "tiny", "image"

        def build(self, shape):
            class Eigen(torch.nn.Module):
                def forward(self, x):
                    return torch.linalg.eigvalsh(x @ x.transpose(-1, -2))

            return Eigen()

        def make_batch(self, batch_size, shape, seed):
            return {"images": torch.randn(batch_size, 3, 4, 4)}

        def forward(self, model, batch):
            return model(batch["images"])

    framework = OnnxRuntimeFramework("cpu", "fp32", 1)
    framework.runtime, framework.exports_dir = RuntimeConfig(name="onnxruntime"), tmp_path
    with pytest.raises(ExportError, match="No ONNX function found for <OpOverload.op='aten._linalg_eigh'"):
        onnx_export(framework, Entry(), zoo.InputShape(), 2, 0, 18)
    assert not list(tmp_path.iterdir())  # nothing half-written is left for a later run to take


@pytest.mark.slow
def test_parity_passes_on_each_runtime_and_fails_for_perturbed_weights(results_dir, tmp_path):
    import torch

    import zoo

    for runtime in ("onnxruntime", "mnn"):
        done = run_command(results_dir, "parity", *RESNET, *NONE, f"candidate=runtime={runtime}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "parity-resnet50: PASS" in done.stdout and "loss: not compared" in done.stdout
    # A ported model whose weights are off by a little: the export computes something else.
    model = zoo.load("resnet50", size="tiny", seed=0).model
    with torch.no_grad():
        model.fc.bias.add_(1e-3)
    perturbed = tmp_path / "perturbed.pt"
    torch.save(model.state_dict(), perturbed)
    done = run_command(
        results_dir, "parity", *RESNET, *NONE, f"candidate=runtime=onnxruntime model.weights={perturbed}"
    )
    assert done.returncode == 1 and "parity-resnet50: FAIL" in done.stdout, done.stdout + done.stderr
    assert "outputs: max abs err 0.001" in done.stdout


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc to build the connect() logging library")
def test_export_conversion_and_run_need_no_network(tmp_path):
    """Every process of the tree logs, below Python, what it tries on the network (and is
    refused); in a network namespace of its own too where unshare can make one."""
    from stand_ins import NETWORK_SHIM_C, build_library, outward_attempts

    shim = build_library(tmp_path / "no-network.so", NETWORK_SHIM_C, "-ldl")
    attempts = tmp_path / "attempts.log"
    results = tmp_path / "results"
    isolated = shutil.which("unshare") and os.geteuid() == 0
    env = {"LD_PRELOAD": str(shim), "NETWORK_ATTEMPTS": str(attempts)}
    done = run_command(
        results,
        "bench",
        "model=bert",
        *TINY,
        *NONE,
        "runtime=mnn",
        env=env,
        prefix=("unshare", "-n") if isolated else (),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [result] = results_of(results)
    log = (results / "runs" / result.run_id / "worker.log").read_text()
    assert "export: bert (tiny) ->" in log and "Converted Success!" in log
    assert result.status == "success" and _checks(result)["runtime_backend"].passed
    logged = attempts.read_text()
    # The library was in the command and in its worker (which exported, converted and ran).
    assert "runners.cli.bench" in logged and "runners.worker" in logged, logged[:2000]
    assert outward_attempts(logged) == [], outward_attempts(logged)
    # It is live below Python: a C program's connect() (bash's /dev/tcp) and Python's are logged and refused.
    import subprocess

    for probe in (
        ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9"],
        [sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 9))"],
        [sys.executable, "-c", "import socket; socket.getaddrinfo('example.com', 443)"],
    ):
        before = len(outward_attempts(attempts.read_text()))
        refused = subprocess.run(probe, env={**os.environ, **env}, capture_output=True, text=True)
        assert refused.returncode != 0 and len(outward_attempts(attempts.read_text())) > before, probe


def test_a_gpu_provider_refused_on_the_cpu_and_invalid_where_it_does_not_run(results_dir, tmp_path):
    refused = run_command(results_dir, "bench", *RESNET, *NONE, "runtime=onnxruntime", "runtime.provider=cuda")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "error: runtime.provider=cuda runs on a GPU, and backend 'cpu' has none. Valid here: runtime.provider=cpu"
    ]
    wrong = run_command(results_dir, "bench", "model=t5", *TINY, *NONE, "runtime=mnn")
    assert wrong.returncode == 2 and "models on mnn: bert, mobilenet_v3_large, resnet50" in wrong.stderr
    if not shutil.which("gcc"):
        pytest.skip("needs gcc for the stand-in GPU layer")
    # A GPU backend (HAMi's stand-in on this CPU): the runtimes get as far as their fallback.
    import subprocess

    library = tmp_path / "libvgpu.so"
    (tmp_path / "vgpu.c").write_text("int stand_in(void) { return 0; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(tmp_path / "vgpu.c")], check=True)
    for runtime in ("onnxruntime", "mnn"):
        done = run_command(
            results_dir, "bench", *RESNET, *NONE, "backend=hami", f"backend.library={library}",
            f"runtime={runtime}", "runtime.provider=cuda",
        )  # fmt: skip
        assert done.returncode == 1 and "INVALID" in done.stderr, done.stdout + done.stderr
    ort, mnn = sorted(results_of(results_dir), key=lambda r: r.config["runtime"]["name"] != "onnxruntime")
    assert ort.status == mnn.status == "invalid"
    provider, backend = _checks(ort)["runtime_provider"], _checks(mnn)["runtime_backend"]
    assert not provider.passed and "runs on CPUExecutionProvider" in provider.detail
    assert not backend.passed and "fell back" in backend.detail
    assert ort.value("throughput") is not None  # it ran: the figures are kept, marked invalid


@pytest.mark.mnn_in_process
def test_an_mnn_gpu_backend_is_not_taken_on_the_absence_of_its_fallback_notice(tmp_path, monkeypatch):
    """MNN's fallback notice reworded (here: never recognized): the CUDA backend still has to
    show at work in the process, and on this CPU it cannot: the check fails, closed."""
    import re

    import zoo
    from runners.config import RuntimeConfig, WorkloadConfig
    from runners.worker.frameworks import mnn_runtime

    monkeypatch.setattr(mnn_runtime, "FALLBACK", re.compile("a notice MNN never prints"))
    framework = mnn_runtime.MnnFramework("cuda", "fp32", 1)
    framework.runtime, framework.exports_dir = RuntimeConfig(name="mnn", provider="cuda"), tmp_path / "exports"
    entry = zoo.get("resnet50")("tiny")
    framework.infer_step(entry, WorkloadConfig(batch_size=2), zoo.InputShape(image_size=32), 0)
    [check] = framework.runtime_checks()
    assert not check.passed and "no fallback reported; no CUDA device at work in this process" in check.detail
    assert framework.device_seen()["name"] is None  # and the device check has nothing to pass on
    monkeypatch.undo()
    cpu = mnn_runtime.MnnFramework("cpu", "fp32", 1)
    cpu.runtime, cpu.exports_dir = RuntimeConfig(name="mnn", provider="cpu"), tmp_path / "exports"
    cpu.infer_step(entry, WorkloadConfig(batch_size=2), zoo.InputShape(image_size=32), 0)
    assert [c.passed for c in cpu.runtime_checks()] == [True]
