"""result file -> MLflow. Only the parent talks to MLflow, after the worker returned.
TAGS is the one list of the tags a run carries; tracking/read.py filters on the same."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Optional

from runners.config import TrackingConfig, flatten
from runners.contracts import JOB_FILE, LAUNCH_FILE, LOG_FILE, RESULT_FILE, GroupRecord, Result
from runners.redact import redact_tree, redact_value

MAX_PARAM_LENGTH = 6000  # MLflow's limit for a param value
TRACKING_FILE, UNSYNCED_FILE = "tracking.json", "UNSYNCED"
LOCK_RETRIES = 8
PROBE_TIMEOUT_S = 3.0
SCHEMA_TEMPLATE_ID = 0x76676275  # "vgbu": sqlite's application_id of a store started from schema_template()
ARTIFACTS = (RESULT_FILE, LOG_FILE, JOB_FILE, LAUNCH_FILE, "trace.json", "top_ops.txt", "requests.csv")

# Every tag of a run's MLflow record, and how it is read off the result.
TAGS: dict[str, Callable[[Result], str]] = {
    "model": lambda r: r.model.name if r.model else "",
    "model_size": lambda r: str(r.model.size) if r.model else "",
    "workload": lambda r: r.workload or r.task,
    "task": lambda r: r.task,
    "backend": lambda r: r.backend["name"],
    "backend_requested": lambda r: r.backend.get("requested", ""),
    "framework": lambda r: r.model.framework if r.model else "",
    # What ran the model (runtime=...): its own framework, or onnxruntime / mnn on its export.
    "runtime": lambda r: (r.config.get("runtime") or {}).get("name") or (r.model.framework if r.model else ""),
    "device_name": lambda r: str(r.device.name or ""),
    "driver_version": lambda r: str((r.environment.gpus or [{}])[0].get("driver_version", "")),
    "status": lambda r: r.status,
    "label": lambda r: str(r.config.get("label", "")),
    "suite_version": lambda r: r.environment.suite.get("version", "unknown"),
    "git_commit": lambda r: r.environment.suite.get("git_commit", "unknown"),
    "run_id": lambda r: r.run_id,
    "group_kind": lambda r: r.group.kind if r.group else "",
    "group_id": lambda r: r.group.id if r.group else "",
    "group_role": lambda r: r.group.role if r.group else "",
    "group_index": lambda r: "" if not r.group or r.group.index is None else str(r.group.index),
    "engaged": lambda r: "" if r.evidence is None else str(r.evidence.engaged).lower(),
    # How the worker started (runners/parent/fork_servers.py): its start-up and its host memory
    # peak differ by it, so comparisons set those figures side by side only between alike starts.
    "worker_start": lambda r: "forked" if (r.details.get("startup") or {}).get("forked") else "fresh",
    "memory_source": lambda r: r.memory_peak_source or "",
}
# Tags only group (parent) runs carry.
GROUP_TAGS = ("kind", "group", "baseline", "candidate", "verdict", "engagement")


def tags_of(result: Result) -> dict[str, str]:
    return {name: read(result) for name, read in TAGS.items()}


def tracking_uri(config: TrackingConfig, results_dir: Path) -> str:
    """The one place the store is chosen: the config, else $MLFLOW_TRACKING_URI, else the results dir's sqlite."""
    return config.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{results_dir.resolve()}/mlflow.db"


# MLflow 3's UI asks what an experiment of unknown kind is, and opens it on its GenAI "Traces"
# view (empty here); this kind marks it classic model training. A browser still in MLflow's
# GenAI mode opens it on a GenAI overview: the address `make ui` prints switches the mode.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def _experiment_id(client, name: str, results_dir: Path) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        # Artifacts next to the store, not in whatever directory the command ran from.
        location = (results_dir.resolve() / "mlartifacts").as_uri()
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
    for key, value in EXPERIMENT_KIND.items():
        if experiment.tags.get(key) is None:  # made by an older suite: set, never overwrite a user's choice
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


class StoreUnreachable(ConnectionError):
    """The tracking server did not answer a connection: nothing is sent to it for the rest of the process."""


# By URI, for the process: a sweep learns once that its server is down, not once per run.
_unreachable: dict[str, str] = {}


def check_reachable(uri: str) -> None:
    """Raise StoreUnreachable, in at most PROBE_TIMEOUT_S, when an http(s) store does not accept
    a connection. MLflow's client would otherwise retry each request with back-off for minutes
    (4 min 15 s for one run's logging, measured) before giving up. Other stores (sqlite, a
    folder, databricks) are not probed."""
    if uri not in _unreachable:
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme not in ("http", "https"):
            return
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            socket.create_connection((parsed.hostname or "", port), timeout=PROBE_TIMEOUT_S).close()
            return
        except (OSError, ValueError) as exc:
            _unreachable[uri] = f"{type(exc).__name__}: {exc}"
    raise StoreUnreachable(
        f"the tracking store {redact_value(uri)} did not accept a connection within {PROBE_TIMEOUT_S:g} s "
        f"({_unreachable[uri]}); "
        f"not tried again by this command"
    )


def client_for(config: TrackingConfig, results_dir: Path):
    """(MlflowClient, experiment id) of the configured store."""
    uri = tracking_uri(config, results_dir)
    check_reachable(uri)
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after import: mlflow sets its own level then
    with _opening_lock(uri):
        _start_from_schema(uri)
        client = MlflowClient(uri)
        return client, _experiment_id(client, config.experiment, results_dir)


def schema_template() -> Path:
    """Where this installation keeps an empty sqlite store with MLflow's schema (`make setup`)."""
    import mlflow

    return Path(sys.prefix) / "share" / "vgpu-bench" / f"mlflow-{mlflow.__version__}-schema.db"


def make_schema_template() -> Path:
    """Create schema_template() once: MLflow's tables and migrations, no experiment (MLflow adds
    its Default experiment, with the store's own artifact root, when a copy is first opened)."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    template = schema_template()
    if not template.exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        building = template.with_suffix(f".{os.getpid()}.tmp")
        engine = sqlalchemy.create_engine(f"sqlite:///{building}")
        try:
            _initialize_tables(engine)
            with engine.begin() as connection:  # what tells a store started from it (MLflow never sets it)
                connection.exec_driver_sql(f"PRAGMA application_id = {SCHEMA_TEMPLATE_ID}")
        finally:
            engine.dispose()
        building.replace(template)  # atomic: a reader sees no half-built schema
    return template


def _sqlite_file(uri: str) -> Optional[Path]:
    """The database file of a sqlite:/// store; None for any other store."""
    return Path(uri[len("sqlite:///") :].split("?")[0]) if uri.startswith("sqlite:///") else None


def _start_from_schema(uri: str) -> None:
    """A new sqlite store starts as a copy of the schema template, when the installation has one:
    creating the schema runs MLflow's migrations, 2-5 s of a first run here."""
    path = _sqlite_file(uri)
    if path is None or path.exists():
        return
    with contextlib.suppress(OSError, ImportError):
        template = schema_template()
        if template.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            copying = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            shutil.copyfile(template, copying)
            copying.replace(path)  # atomic: a copy cut short is never taken for a store


@contextlib.contextmanager
def _opening_lock(uri: str):
    """One process at a time opens a sqlite store: the first opening creates its schema (MLflow's
    migrations) and the experiment, and two sweeps starting together once left a half-migrated
    store that no client could open again. Servers and databases serialize this themselves."""
    path = _sqlite_file(uri)
    if path is None:
        yield
        return
    try:
        lock = open(f"{path}.lock", "a")
    except OSError:  # a store somewhere we cannot write beside: open it unguarded
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def find_logged(client, experiment_id: str, run_id: str) -> Optional[str]:
    """The MLflow run that already holds result `run_id` whole, if any (logging is idempotent).
    A run of it still RUNNING is an attempt cut short (a locked store, a crash) between
    `create_run` and `set_terminated`, the last call of `_log_new`: it is deleted, so the
    result is logged again whole instead of being taken for logged with half its data."""
    found = client.search_runs([experiment_id], filter_string=f"tags.run_id = '{run_id}'")
    complete = [run.info.run_id for run in found if run.info.status != "RUNNING"]
    for run in found:
        if run.info.status == "RUNNING":
            client.delete_run(run.info.run_id)
    return complete[0] if complete else None


def _retrying(action: Callable[[], str]) -> str:
    for attempt in range(LOCK_RETRIES):
        try:
            return action()
        except Exception as exc:  # sqlite allows one writer: another sweep may hold the lock
            if "locked" not in str(exc).lower() or attempt == LOCK_RETRIES - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def log_result(
    result: Result, run_dir: Path, config: TrackingConfig, results_dir: Path, parent_run_id: Optional[str] = None
) -> str:
    """Log one run, exactly once: a result already in the store is not logged again.
    Returns the MLflow run id. A failed workload is a FAILED run. Writes tracking.json
    next to the result; on failure the caller marks the result unsynced."""

    def attempt() -> str:
        client, experiment_id = client_for(config, results_dir)
        return find_logged(client, experiment_id, result.run_id) or _log_new(
            client, experiment_id, result, run_dir, parent_run_id
        )

    run_id = _retrying(attempt)
    (run_dir / TRACKING_FILE).write_text(
        json.dumps({"mlflow_run_id": run_id, "tracking_uri": redact_value(tracking_uri(config, results_dir))})
    )
    (run_dir / UNSYNCED_FILE).unlink(missing_ok=True)
    return run_id


def mark_unsynced(run_dir: Path, error: Exception) -> None:
    """The result stays in results/runs/; `make sync` logs it later."""
    (run_dir / UNSYNCED_FILE).write_text(f"{type(error).__name__}: {error}\n")


def _params(config: dict) -> list:
    from mlflow.entities import Param

    return [Param(k, redact_value(str(v))[:MAX_PARAM_LENGTH]) for k, v in flatten(redact_tree(config)).items()]


def _log_new(client, experiment_id: str, result: Result, run_dir: Path, parent_run_id: Optional[str]) -> str:
    from mlflow.entities import Metric, Param

    tags = tags_of(result)
    if result.error:
        tags["error_type"] = result.error.type
        tags["error"] = result.error.message[:5000]
    if result.evidence:
        tags["engagement"] = result.evidence.verdict[:5000]
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    # The run's times are the worker's: MLflow's duration column then shows how long it ran.
    run = client.create_run(
        experiment_id, run_name=result.display_name, tags=tags, start_time=int(result.started_at * 1000)
    )
    run_id = run.info.run_id
    timestamp = int((result.finished_at or result.started_at) * 1000)
    params = _params(result.config)
    params.append(Param("model.resolved_size", str(result.model.size if result.model else "")))
    metrics = [Metric(k, q.value, timestamp, 0) for k, q in result.metrics.items()]
    for start in range(0, len(params), 100):  # log_batch takes at most 100 params per call
        client.log_batch(run_id, params=params[start : start + 100])
    client.log_batch(run_id, metrics=metrics)
    for name in ARTIFACTS:
        if (run_dir / name).exists():
            client.log_artifact(run_id, str(run_dir / name))
    if (run_dir / "tf_profile").is_dir():
        client.log_artifacts(run_id, str(run_dir / "tf_profile"), "tf_profile")
    client.set_terminated(run_id, status="FINISHED" if result.ok else "FAILED", end_time=timestamp)
    return run_id


def log_summary(
    run_name: str,
    tags: dict[str, str],
    metrics: dict[str, float],
    succeeded: bool,
    config: TrackingConfig,
    results_dir: Path,
    artifacts: tuple[Path, ...] = (),
    parent_run_id: Optional[str] = None,
) -> str:
    """A run that holds no workload of its own: a group, a comparison, a parity check.
    Children point to it with mlflow.parentRunId."""
    from mlflow.entities import Metric

    client, experiment_id = client_for(config, results_dir)
    if parent_run_id:
        tags = {**tags, "mlflow.parentRunId": parent_run_id}
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    now = run.info.start_time
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    for path in artifacts:
        client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id, status="FINISHED" if succeeded else "FAILED")
    return run.info.run_id


def log_group(
    group: GroupRecord, first: Result, config: TrackingConfig, results_dir: Path, parent_run_id: Optional[str] = None
) -> str:
    """The parent run of a group: its record's figures, the tags its runs share."""
    tags = {k: v for k, v in tags_of(first).items() if k not in ("run_id", "status", "group_role", "group_index")}
    tags.update(kind=group.kind, group=group.id, status=group.status)
    if group.details.get("invalid_because"):  # a quota that did not hold: configured vs achieved
        tags["verdict"] = str(group.details["invalid_because"])[:5000]
    return log_summary(
        group.name,
        tags,
        {k: q.value for k, q in group.metrics.items()},
        group.status == "success",
        config,
        results_dir,
        (group.path(results_dir),),
        parent_run_id,
    )


def start_sweep(overrides: list[str], config: TrackingConfig, results_dir: Path) -> str:
    """The parent run of a sweep (a multirun); finished by `end_sweep`."""
    client, experiment_id = client_for(config, results_dir)
    run = client.create_run(
        experiment_id,
        run_name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={"kind": "sweep", "overrides": " ".join(overrides)[:5000]},
    )
    return run.info.run_id


def end_sweep(run_id: str, runs: int, failed: int, config: TrackingConfig, results_dir: Path) -> None:
    from mlflow.entities import Metric

    client, _ = client_for(config, results_dir)
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric("runs", runs, now, 0), Metric("failed_runs", failed, now, 0)])
    client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")
