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


def _ui(results_dir: Path, port: int) -> subprocess.Popen:
    """`make ui` as a user types it, with this interpreter's environment."""
    recipe = re.search(r"^ui:.*\n\t(.+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert "--host 127.0.0.1" in recipe  # loopback only
    command = ["make", "-s", "ui", f"RESULTS={results_dir}", f"PORT={port}", f"VENV={Path(sys.executable).parents[1]}"]
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_ui_serves_the_logged_run_with_its_metrics(cli, results_dir):
    assert cli("model=dummy", "workload=train", "backend=cpu", *TINY).returncode == 0
    port = _free_port()
    server = _ui(results_dir, port)
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
