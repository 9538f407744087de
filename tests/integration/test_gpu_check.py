"""`make gpu-check` without a GPU: the plan, the refusal, and an item that fails while the rest go on."""

import json

from runners.cli import gpu_check
from runners.parent.gpu_paths import Item, Missing, items, successful

from conftest import REPO, logged_runs, run_command

DUMMY = ["bench", "model=dummy", "backend=cpu", "model.size=tiny", "workload.min_steps=2", "workload.min_duration_s=0"]


def test_the_plan_lists_every_item_with_its_budget_and_fits_eight_minutes(tmp_path):
    done = run_command(tmp_path, "gpu_check", "dry_run=true")
    assert done.returncode == 0, done.stderr
    plan = items(1)
    assert sum(i.budget_s for i in plan) <= 8 * 60
    for item in plan:
        assert any(line.split()[:2] == [item.name, f"{item.budget_s:.0f}"] for line in done.stdout.splitlines())
    wanted = {"native", "profile", "microbench", "compile", "generate", "ddp", "mps_tenants", "mps_probe"}
    assert wanted | {"mps_parity", "bench_overhead", "serve_mps", "ort_cuda", "hami_engage", "hami_probe"} == {
        i.name for i in plan
    }


def test_without_a_gpu_it_refuses_in_one_line(tmp_path):
    done = run_command(tmp_path, "gpu_check", env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 2
    assert done.stderr.startswith("error: gpu-check needs an NVIDIA GPU") and done.stderr.count("\n") == 1
    assert not (tmp_path / "reference").exists()


def test_an_unknown_item_is_named_with_the_valid_ones(tmp_path):
    done = run_command(tmp_path, "gpu_check", "only=[nativ]", "dry_run=true")
    assert done.returncode == 2 and "Valid: native, profile" in done.stderr


def _one_success(work, output):
    [result] = successful(work, 1)
    return f"{result.value('throughput'):.0f}/s"


def test_a_failing_item_is_reported_and_the_rest_go_on(tmp_path, results_dir):
    plan = [
        # first: nothing banked by earlier items (each may use what those left of their budgets)
        Item("slow", "a command past its budget", 3, [[*DUMMY, "+backend.extra_env.VGPU_BENCH_DUMMY_FAULT=hang"]],
             _one_success),
        Item("fails", "a workload that raises", 60, [[*DUMMY, "+backend.extra_env.VGPU_BENCH_DUMMY_FAULT=raise"]],
             _one_success),
        Item("absent", "what this host lacks", 10, [DUMMY], _one_success, lambda: "no such daemon here"),
        Item("unchecked", "runs, but its evidence is missing", 60, [DUMMY], lambda w, o: (_ for _ in ()).throw(
            Missing("no launch latency"))),
        Item("works", "a dummy run", 60, [DUMMY], _one_success),
    ]  # fmt: skip
    out = tmp_path / "reference"
    out.mkdir()
    rows = gpu_check.run_plan(plan, out, tmp_path / "work", "Stand-in GPU")
    status = {r["item"]: (r["status"], r["note"]) for r in rows}
    assert status["fails"][0] == "failed" and "dummy workload failed on purpose" in status["fails"][1]
    assert status["slow"] == ("failed", "over its budget of 3 s")
    assert status["absent"] == ("skipped", "no such daemon here")
    assert status["unchecked"] == ("failed", "no launch latency")
    assert status["works"][0] == "ok" and status["works"][1].endswith("/s")
    summary = (out / "summary.md").read_text()
    assert [r["item"] for r in rows][:2] == ["slow", "fails"]
    assert "| fails | failed |" in summary and "| works | ok |" in summary and "1 ok, 3 failed, 1 skipped" in summary
    assert json.loads((out / "summary.json").read_text())["gpu"] == "Stand-in GPU"
    # the evidence is kept: result files of every item that ran, worker logs only where it failed
    assert list((out / "works").glob("runs/*/result.json")) and not list((out / "works").glob("runs/*/worker.log"))
    assert list((out / "fails").glob("runs/*/worker.log"))
    assert str(REPO) not in summary
    # ... and loads into MLflow at home: `make ingest DIR=results/reference/<gpu>`
    ingested = run_command(results_dir, "sync", f"dir={out}")
    assert ingested.returncode == 0, ingested.stderr[-2000:]
    kept = list(out.glob("*/runs/*/result.json"))
    assert len(kept) == 4 and len(logged_runs(results_dir)) == len(kept)
