"""`make ui` serves the store: a real MLflow UI process on loopback shows a logged run's metrics,
and the address it prints opens, in a browser that never saw it, on the suite's runs table."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, TINY, chromium, headless_chromium, run_command, run_dirs

# A training run synchronizes once per window (workload.sync=window): a mean step time, no percentiles.
METRICS = {
    "throughput",
    "latency_ms_mean",
    "memory_peak_mb",
    "time_to_first_step_s",
    "startup_import_s",
    "startup_build_s",
    "startup_first_step_s",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ui(results_dir: Path, port: int, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    """`make ui` as a user types it, with this interpreter's environment."""
    recipe = re.search(r"^ui:.*\n\t(.+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert "--host 127.0.0.1" in recipe  # loopback only
    command = ["make", "-s", "ui", f"RESULTS={results_dir}", f"PORT={port}", f"VENV={Path(sys.executable).parents[1]}"]
    return subprocess.Popen(
        command, cwd=REPO, stdout=stdout, stderr=subprocess.DEVNULL, start_new_session=True, text=True
    )


def _wait_healthy(base: str) -> None:
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{base}/health", timeout=1)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the UI at {base} never answered")


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.mark.slow
def test_ui_serves_the_logged_run_with_its_metrics(cli, results_dir):
    assert cli("model=dummy", "workload=train", "backend=cpu", *TINY).returncode == 0
    port = _free_port()
    server = _ui(results_dir, port)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base)
        experiments = _post(f"{base}/api/2.0/mlflow/experiments/search", {"max_results": 10})["experiments"]
        experiment = next(e for e in experiments if e["name"] == "vgpu-bench")
        # the UI opens it on its runs (classic training), not on MLflow 3's empty GenAI traces view
        assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in experiment["tags"]
        runs = _post(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
        assert len(runs) == 1
        assert {m["key"] for m in runs[0]["data"]["metrics"]} >= METRICS
        assert runs[0]["info"]["run_name"] == "dummy-train-cpu"
        with urllib.request.urlopen(f"{base}/", timeout=10) as page:  # the UI itself
            assert b"MLflow" in page.read()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the UI's workers too
        server.wait(timeout=30)


def _page(url: str, profile: Path) -> str:
    """The page a browser with a fresh profile (no saved columns, no history) builds at `url`.
    Wide enough that the grid draws every column (it draws only those in view)."""
    browser = [
        *headless_chromium(profile),
        "--window-size=2400,1200",
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
    ]
    return subprocess.run(browser, capture_output=True, text=True, timeout=120).stdout


def _cells(dom: str, column: str) -> list[str]:
    """The texts of one column's cells in the runs grid (a cell ends where the next begins)."""
    texts = []
    for cell in re.split(r'role="gridcell" ', dom)[1:]:
        if cell.startswith(f'col-id="{column}"'):
            text = re.sub(r"<[^>]*(>|$)", " ", "<" + cell.split('<div class="ag-cell ')[0])
            texts.append(" ".join(text.split()))
    return texts


@pytest.mark.slow
@pytest.mark.skipif(not chromium(), reason="no chromium (make test-deps installs it where it can)")
def test_printed_address_opens_the_runs_table_with_the_suites_columns(cli, results_dir, tmp_path):
    assert cli("model=dummy", "backend=cpu", "tracking=none", *TINY).returncode == 0
    # A second run, invalid (its layer could not be shown to engage), loaded as `make ingest` does.
    (run,) = run_dirs(results_dir)
    shutil.copytree(run, tmp_path / "elsewhere" / run.name)
    copy = tmp_path / "elsewhere" / "invalid-run"
    shutil.copytree(run, copy)
    result = json.loads((copy / "result.json").read_text())
    result.update(status="invalid", run_id=result["run_id"] + "-invalid")
    (copy / "result.json").write_text(json.dumps(result))
    assert run_command(results_dir, "sync", f"dir={copy.parent}").returncode == 0
    port = _free_port()
    server = _ui(results_dir, port, stdout=subprocess.PIPE)
    try:
        printed = server.stdout.readline()
        address = re.search(r"http://\S+", printed).group(0)
        assert address.startswith(f"http://127.0.0.1:{port}/#/experiments/") and "/runs?" in address
        _wait_healthy(f"http://127.0.0.1:{port}")
        dom = _page(address, tmp_path / "browser")
        # MLflow's defaults are not what it shows: a new user's plain runs page has none of the
        # suite's columns, so this check fails without the view.
        plain = _page(address.split("?")[0], tmp_path / "browser-2")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    shown = set(re.findall(r'col-id="([^"]+)"', dom))
    for column in ("model", "workload", "backend", "device_name", "label", "status"):
        assert f"tags.`{column}`" in shown, column
    for column in ("throughput", "latency_ms_p50", "latency_ms_p99"):
        assert f"metrics.`{column}`" in shown, column
    assert "attributes.`Dataset`" not in shown
    assert sorted(_cells(dom, "tags.`status`")) == ["invalid", "success"]  # an invalid run says so
    assert _cells(dom, "tags.`model`") == ["dummy", "dummy"] and _cells(dom, "tags.`backend`") == ["cpu", "cpu"]
    assert "Traces 0" not in dom
    assert ">Judges<" not in dom and ">Model registry<" in dom  # model training's navigation, not GenAI's
    assert 'role="gridcell"' in plain and "tags.`status`" not in plain and "attributes.`Dataset`" in plain


def test_ui_bad_results_folder_is_one_line(tmp_path):
    not_a_folder = tmp_path / "results.txt"
    not_a_folder.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "runners.cli.ui", "--results", str(not_a_folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: RESULTS=") and done.stderr.count("\n") == 1
