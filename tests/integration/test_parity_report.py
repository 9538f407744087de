"""Numerical parity and the HTML report, on the CPU; the report opened in a real browser."""

import re
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY, chromium, groups_of, headless_chromium, results_of, run_command

# DLRM: a real zoo model whose worker imports torch alone (parity is model-agnostic).
DLRM = ["model=dlrm", "model.size=tiny", "workload.batch_size=2"]


def _python(module, *args, results_dir):
    return run_command(results_dir, module.rsplit(".", 1)[1], *args)


@pytest.mark.slow
def test_parity_passes_identical_runs_and_fails_a_perturbed_one(results_dir, tmp_path):
    import torch

    import zoo

    same = _python(
        "runners.cli.parity", "baseline=backend=cpu", "candidate=backend=cpu", *DLRM, results_dir=results_dir
    )
    assert same.returncode == 0, same.stdout + same.stderr
    assert "outputs: max abs err 0" in same.stdout and "parity-dlrm: PASS" in same.stdout
    # The candidate with other weights (model.weights is honoured on each side): other outputs.
    other = tmp_path / "other.pt"
    torch.save(zoo.load("dlrm", size="tiny", seed=5).model.state_dict(), other)
    perturbed = _python(
        "runners.cli.parity", f"candidate=backend=cpu model.weights={other}", *DLRM, results_dir=results_dir
    )
    assert perturbed.returncode == 1 and "parity-dlrm: FAIL" in perturbed.stdout
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    runs = client.search_runs(
        [client.get_experiment_by_name("vgpu-bench").experiment_id], filter_string="tags.kind = 'parity'"
    )
    assert sorted(r.data.tags["verdict"] for r in runs) == ["fail", "pass"]
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]
    # The verdict is the pair's record; each run's own result file is left as its worker wrote it.
    records = groups_of(results_dir)
    assert sorted(g.details["verdict"] for g in records) == ["fail", "pass"]
    assert all(g.kind == "parity" and [m.role for m in g.members] == ["baseline", "candidate"] for g in records)
    assert all("verdict" not in r.details["parity"] for r in results_of(results_dir))


def test_parity_bad_input_is_one_line(results_dir):
    # In the order `make parity model=bert candidate=... ARGS=...` passes them: overrides around the options.
    done = _python("runners.cli.parity", DLRM[0], "candidate=backend=vgpuu", *DLRM[1:], results_dir=results_dir)
    assert done.returncode == 2 and done.stderr.startswith("error: unknown backend 'vgpuu'")


@pytest.mark.skipif(not chromium(), reason="no chromium (make test installs it where it can)")
def test_report_plots_render_in_a_headless_browser(cli, results_dir):
    assert cli("--multirun", "model=dummy", "backend=cpu", "label=base,cand", *TINY).returncode == 0
    done = _python(
        "runners.cli.analyze", "report", "baseline=label=base", "candidate=label=cand", results_dir=results_dir
    )
    assert done.returncode == 0, done.stderr
    page = done.stdout.split("report: ", 1)[1].strip()
    text = open(page).read()
    assert "src='http" not in text and "<link" not in text  # self-contained
    browser = headless_chromium(results_dir / "browser")
    dom = subprocess.run([*browser, "--dump-dom", f"file://{page}"], capture_output=True, text=True, timeout=120).stdout
    shot = results_dir / "report.png"
    subprocess.run(
        [*browser, f"--screenshot={shot}", "--window-size=1280,2400", f"file://{page}"],
        capture_output=True,
        timeout=120,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000  # it was drawn
    body = re.search(r"<body[^>]*>", dom).group(0)
    total = int(re.search(r'data-plots-total="(\d+)"', body).group(1))
    rendered = int(re.search(r'data-plots-rendered="(\d+)"', body).group(1))
    assert total == 4 and rendered == total  # the browser decoded every plot
    # the plotted values are in the page the browser built: the heat map cell and the overhead bar
    by_label = {r.config["label"]: r.value("throughput") for r in results_of(results_dir)}
    ratio = by_label["cand"] / by_label["base"]  # one run a side: the ratio of their throughputs
    assert f'data-ratio="{ratio:.3f}"' in dom and f'data-overhead="{(1 - ratio) * 100:.2f}"' in dom
    # one run a side: no interval holds, and the chart draws none
    assert 'data-interval="none: run-to-run noise unknown' in dom
    for section in ("Throughput", "Latency", "Memory", "Overhead", "Numerical parity", "Environment fingerprints"):
        assert f"<h2>{section}</h2>" in dom
    assert "Engagement and parity per pair" in dom and "engaged" in dom  # both dummy sides' verdicts
    assert "identical" in dom or "<th>fingerprint</th>" in dom  # differences only, not two raw dumps
