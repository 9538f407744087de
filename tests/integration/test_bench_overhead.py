"""`make bench-overhead` on this CPU: a real `make bench` worker against the hand-written
loop in its own process, like with like, ending in overhead.json (no timing asserted)."""

import json
import math

from tests.conftest import run_command


def test_overhead_benchmark_pairs_a_real_worker_with_a_loop_of_its_own(results_dir):
    done = run_command(
        results_dir,
        "bench_overhead",
        "backend=cpu",
        "backend.threads=1",
        "cases=[bert-bf16]",
        "rounds=1",
        "seconds=0.1",
        "warmup_steps=1",
        "min_steps=3",
        "tracking=none",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads((results_dir / "overhead.json").read_text())
    (case,) = document["cases"]
    assert {k: case[k] for k in ("name", "model", "size", "precision", "device", "batch_size", "rounds")} == {
        "name": "bert-bf16",
        "model": "bert",
        "size": "tiny",
        "precision": "bf16",
        "device": "cpu",
        "batch_size": 8,
        "rounds": 1,
    }
    for key in ("suite_ms", "loop_ms", "ratio", "ci_low", "ci_high"):
        assert math.isfinite(case[key]) and case[key] > 0, key
    assert case["ci_low"] <= case["ratio"] <= case["ci_high"]
    assert math.isclose(case["ratio"], case["suite_ms"] / case["loop_ms"], rel_tol=1e-9)
    assert "suite/loop" in done.stdout and "bert-bf16" in done.stdout

    # The suite's side is a real worker run, launched by the parent, as `make bench` runs it.
    for run in case["runs"]:
        suite = json.loads((results_dir.parent / run["suite"] / "result.json").read_text())
        job = json.loads((results_dir.parent / run["suite"] / "job.json").read_text())
        workload = job["config"]["workload"]
        assert suite["status"] == "success" and job["backend"]["name"] == "cpu"
        assert (workload["precision"], workload["batch_size"], workload["inputs"], workload["sync"]) == (
            "bf16",
            8,
            "host",
            "step",
        )
        # The loop ran in a process of its own, on the same device, with the same model and batch.
        loop = json.loads((results_dir.parent / run["loop"] / "loop.json").read_text())
        assert loop["placement"] == {"model": ["cpu"], "inputs": ["cpu"]}
        assert loop["params"] == suite["model"]["params"]
        assert loop["to_device_bytes_per_step"] == suite["metrics"]["to_device_bytes_per_step"]["value"]
        assert loop["loop"]["precision"] == "bf16" and loop["loop"]["seed"] == job["config"]["seed"]


def test_a_backend_it_does_not_run_on_is_one_line(results_dir):
    done = run_command(results_dir, "bench_overhead", "backend=mps")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cpu, native or auto" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_gpu_backend_without_a_gpu_is_refused_before_anything_runs(results_dir):
    done = run_command(results_dir, "bench_overhead", "backend=native", env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stdout == ""
    assert "native" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (results_dir / "overhead").exists()
