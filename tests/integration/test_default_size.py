"""model.size=auto (every model config's default): the real size on a GPU, tiny on a machine
without one, through the real command (Hydra composition, plan, worker, result)."""

from test_diagnostics_path import FAKE_PYNVML  # one GPU that NVML lists

from conftest import results_of, run_command

SHORT = ["tracking=none", "backend.threads=1", "workload.warmup_steps=1", "workload.min_steps=2"]


def _planned_size(results_dir, *args, env=None) -> str:
    done = run_command(results_dir, "bench", "dry_run=true", *args, env=env)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("  model: ")]
    return line.rsplit(" ", 1)[1]


def test_the_default_run_is_tiny_on_a_machine_without_a_gpu(results_dir):
    # the defaults of `make bench` (bert, infer, backend=auto), measuring cut short
    done = run_command(results_dir, "bench", *SHORT, "workload.min_duration_s=0")
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = results_of(results_dir)
    assert result.ok and result.backend["name"] == "cpu"
    assert result.model.size == "tiny" and result.config["model"]["size"] == "tiny"
    assert "bert tiny" in done.stdout  # the table says which size ran


def test_a_gpu_an_explicit_size_or_weights_keep_the_real_size(results_dir, tmp_path):
    gpu = tmp_path / "fake-nvml"
    gpu.mkdir()
    (gpu / "pynvml.py").write_text(FAKE_PYNVML)
    with_gpu = {"PYTHONPATH": str(gpu), "CUDA_VISIBLE_DEVICES": "0"}
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"")
    assert _planned_size(results_dir) == "tiny"
    assert _planned_size(results_dir, "backend=cpu", env=with_gpu) == "base"  # pairs with the GPU's runs
    assert _planned_size(results_dir, "model=resnet50", "backend=cpu", env=with_gpu) == "full"
    assert _planned_size(results_dir, "model.size=base") == "base"
    assert _planned_size(results_dir, f"model.weights={weights}") == "base"
    assert _planned_size(results_dir, "model=llama", "model.size=8b") == "8b"


def test_an_unknown_size_lists_auto_among_the_valid_ones(results_dir):
    done = run_command(results_dir, "bench", "model.size=bse", "dry_run=true")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "Did you mean 'base'? Valid: auto, base, tiny" in done.stderr
