"""`make ui`: the MLflow UI on the results folder's store, and the address to open.

MLflow 3 opens an experiment on its GenAI overview ("Traces 0") and shows Dataset, Source and
Models as a runs table's columns: nothing a benchmark user looks for. So the experiment gets
a saved view (an experiment tag MLflow's runs page reads) that shows the suite's tags and
figures, and the printed address opens the runs table with that view applied, from any
browser profile, with no click."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from runners.config import TrackingConfig
from runners.errors import one_line
from runners.tracking.write import client_for

# MLflow's runs page (3.x) reads `?viewStateShareKey=<id>` and applies the view stored in the
# experiment tag VIEW_TAG_PREFIX + <id>: a JSON envelope {name, createdAt, updatedAt, state},
# `state` the page's UI state as a JSON string. The same tag lists it among the saved views.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_ID = "vgpu-bench"
VIEW_PARAM = "viewStateShareKey"
# What a user compares runs by, then what was measured; `status` tells an invalid or failed
# run from a success (MLflow's own run status says only whether the process ended).
COLUMN_TAGS = ("model", "workload", "backend", "device_name", "label", "status")
COLUMN_METRICS = ("throughput", "latency_ms_p50", "latency_ms_p99")


def columns() -> list[str]:
    """The runs table's column keys, as MLflow's UI spells them (`<type>.`<key>``)."""
    return [f"tags.`{k}`" for k in COLUMN_TAGS] + [f"metrics.`{k}`" for k in COLUMN_METRICS]


def view_tag() -> tuple[str, str]:
    state = {"selectedColumns": columns(), "columnOrder": columns()}
    now = int(time.time() * 1000)
    envelope = {"name": VIEW_ID, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    return VIEW_TAG_PREFIX + VIEW_ID, json.dumps(envelope)


def install_view(client, experiment_id: str) -> None:
    """Write the suite's view on the experiment, or bring an older one up to date (a user's own
    views have other ids and are left alone)."""
    key, value = view_tag()
    current = client.get_experiment(experiment_id).tags.get(key)
    try:
        unchanged = current is not None and json.loads(current)["state"] == json.loads(value)["state"]
    except (ValueError, KeyError, TypeError):
        unchanged = False
    if not unchanged:
        client.set_experiment_tag(experiment_id, key, value)


def url(host: str, port: int, experiment_id: str) -> str:
    # workflowType: a new browser profile starts in MLflow's GenAI mode (its side navigation,
    # and the experiment's bare address opens its overview); this switches it to model training.
    query = f"workflowType=machine_learning&{VIEW_PARAM}={VIEW_ID}"
    return f"http://{host}:{port}/#/experiments/{experiment_id}/runs?{query}"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="make ui", description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=os.environ.get("VGPU_BENCH_RESULTS", "results"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--experiment", default=TrackingConfig().experiment)
    args = parser.parse_args(argv)
    results_dir = Path(args.results).resolve()
    if results_dir.exists() and not results_dir.is_dir():
        print(f"error: RESULTS={args.results} is not a directory; give the results folder", file=sys.stderr)
        return 2
    store = f"sqlite:///{results_dir}/mlflow.db"
    try:
        results_dir.mkdir(parents=True, exist_ok=True)  # a new checkout: an empty store to open
        # The experiment is made (or tagged) the way a run would make it, so the address exists
        # before the first run.
        client, experiment_id = client_for(TrackingConfig(uri=store, experiment=args.experiment), results_dir)
        install_view(client, experiment_id)
    except Exception as exc:  # a folder we cannot write, a store of a newer MLflow
        print(f"error: could not open the store {store}: {one_line(exc)}", file=sys.stderr)
        return 1
    print(f"open {url(args.host, args.port, experiment_id)}", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--workers", "1", "--backend-store-uri", store]
    os.execv(sys.executable, [*command, "--host", args.host, "--port", str(args.port)])
    return 0  # not reached: the UI replaces this process


if __name__ == "__main__":
    sys.exit(main())
