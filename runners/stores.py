"""Reading recorded runs back from MLflow (for comparisons, regressions, reports)."""
from __future__ import annotations

import json
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from runners import results
from runners.config import TrackingConfig
from runners.errors import UsageError

# Tags every run carries (runners/tracking.py); anything else with a dot is a param.
TAG_KEYS = {"model", "model_size", "workload", "backend", "backend_requested", "framework", "device_name", "status",
            "label", "suite_version", "git_commit", "driver_version", "run_id", "repeat_group", "tenant_group", "kind"}


def default_results_dir() -> Path:
    return Path(os.environ.get("VGPU_BENCH_RESULTS", "results")).resolve()


def parse_side(spec: str) -> dict[str, str]:
    """'backend=native label=rel-2.3' (or comma-separated) -> {"backend": "native", "label": "rel-2.3"}."""
    filters = {}
    for part in re.split(r"[,\s]+", (spec or "").strip()):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"a side is key=value pairs such as backend=native or label=release-2.4, got {spec!r}")
        filters[key] = value
    if not filters:
        raise UsageError("a side needs at least one key=value, such as backend=native")
    return filters


def _clause(key: str, value: str) -> str:
    quoted = value.replace("'", "\\'")
    if key.startswith(("tags.", "params.")):
        return f"{key} = '{quoted}'"
    if key in TAG_KEYS:
        return f"tags.{key} = '{quoted}'"
    if "." in key or key in ("seed", "timeout_s", "tenants", "repeats"):
        return f"params.{key} = '{quoted}'"
    raise UsageError(f"unknown side key '{key}'. Valid: {', '.join(sorted(TAG_KEYS))}, or a config key such as "
                     f"workload.batch_size or backend.threads")


@dataclass
class Run:
    mlflow_id: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    start_time: int
    _result: Optional[dict[str, Any]] = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, ...]:
        """What a comparison pairs on."""
        return (self.tags.get("model", "?"), self.tags.get("workload", "?"), self.params.get("workload.precision", "?"),
                self.params.get("workload.batch_size", "?"), self.tags.get("model_size", "?"))

    @property
    def batch_size(self) -> int:
        return int(self.params.get("workload.batch_size", "1"))


class Store:
    def __init__(self, tracking: TrackingConfig | None = None, results_dir: Path | None = None):
        from runners.tracking import _client

        self.results_dir = results_dir or default_results_dir()
        self.tracking = tracking or TrackingConfig()
        self.client, self.experiment_id = _client(self.tracking, self.results_dir)
        self._seen: dict[str, Run] = {}  # by the suite's run id: a run found once keeps its loaded result
        self._noise: dict[tuple, Optional[tuple[float, int]]] = {}  # run_to_run_cv, by configuration

    def runs(self, filters: dict[str, str]) -> list[Run]:
        """Successful single runs (not tenants, groups or comparisons) matching `filters`, newest first."""
        clauses = [_clause(k, v) for k, v in filters.items()] + ["tags.status = 'success'"]
        found = self.client.search_runs([self.experiment_id], filter_string=" and ".join(clauses),
                                        order_by=["attributes.start_time DESC"], max_results=5000)
        runs = []
        for r in found:
            tags = r.data.tags
            if "run_id" in tags and "tenant_role" not in tags and tags.get("workload") != "probe":
                run = self._seen.setdefault(tags["run_id"], Run(r.info.run_id, dict(tags), dict(r.data.params),
                                                                dict(r.data.metrics), r.info.start_time))
                runs.append(run)
        return runs

    def run(self, run_id: str) -> Run:
        """The run with the suite's `run_id`, without asking the store again if it was found before."""
        if run_id not in self._seen:
            self.runs({"run_id": run_id})
        return self._seen[run_id]

    def run_to_run_cv(self, run: Run) -> Optional[tuple[float, int]]:
        """The run-to-run variation (stdev / mean of throughput) measured for `run`'s configuration
        on its backend and device, and how many runs measured it: from the newest `repeats=N`
        group of such runs, None when there is none. One run cannot show this variation,
        however many steps it measured."""
        like = {"model": run.tags.get("model", ""), "workload": run.tags.get("workload", ""),
                "model_size": run.tags.get("model_size", ""), "backend": run.tags.get("backend", ""),
                "device_name": run.tags.get("device_name", ""),
                "workload.precision": run.params.get("workload.precision", ""),
                "workload.batch_size": run.params.get("workload.batch_size", "")}
        key = tuple(like.values())
        if key not in self._noise:  # both sides of a pair often share a configuration
            self._noise[key] = self._newest_repeat_cv(like)
        return self._noise[key]

    def _newest_repeat_cv(self, filters: dict[str, str]) -> Optional[tuple[float, int]]:
        groups: dict[str, list[float]] = {}
        for found in self.runs(filters):  # newest first, so the first group of two or more is the newest
            if found.tags.get("repeat_group"):
                groups.setdefault(found.tags["repeat_group"], []).append(found.metrics["throughput"])
        for throughputs in groups.values():
            if len(throughputs) >= 2:
                return statistics.stdev(throughputs) / statistics.fmean(throughputs), len(throughputs)
        return None

    def result(self, run: Run) -> dict[str, Any]:
        """The run's result file: the local copy when there is one, else its MLflow artifact."""
        if run._result is None:
            local = self.results_dir / "runs" / run.tags["run_id"] / results.RESULT_FILE
            if not local.exists():
                local = Path(self.client.download_artifacts(run.mlflow_id, results.RESULT_FILE))
            run._result = json.loads(local.read_text())
        return run._result
