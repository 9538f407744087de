"""`make ui` serves the store: a real MLflow UI process on loopback shows a logged run's metrics."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import REPO, TINY

METRICS = {
    "throughput",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p99",
    "latency_ms_mean",
    "memory_peak_mb",
    "time_to_first_step_s",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ui_command(results_dir: Path, port: int) -> list[str]:
    """The Makefile's `ui` recipe, with this interpreter's mlflow."""
    recipe = re.search(r"^ui:.*\n\t(.+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    recipe = (
        recipe.replace("$(VENV)/bin/mlflow", f"{sys.executable} -m mlflow")
        .replace("$(abspath $(RESULTS))", str(results_dir))
        .replace("$(PORT)", str(port))
    )
    return recipe.split()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_ui_serves_the_logged_run_with_its_metrics(cli, results_dir):
    assert cli("model=dummy", "workload=train", "backend=cpu", *TINY).returncode == 0
    port = _free_port()
    command = _ui_command(results_dir, port)
    assert "127.0.0.1" in command  # loopback only
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        experiments = _post(f"{base}/api/2.0/mlflow/experiments/search", {"max_results": 10})["experiments"]
        experiment = next(e for e in experiments if e["name"] == "vgpu-bench")
        runs = _post(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
        assert len(runs) == 1
        assert {m["key"] for m in runs[0]["data"]["metrics"]} >= METRICS
        assert runs[0]["info"]["run_name"] == "dummy-train-cpu"
        with urllib.request.urlopen(f"{base}/", timeout=10) as page:  # the UI itself
            assert b"MLflow" in page.read()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the UI's workers too
        server.wait(timeout=30)
