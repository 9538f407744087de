"""Reading recorded runs back from MLflow (for comparisons, regressions, reports)."""

from __future__ import annotations

import shlex
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from runners.config import BenchConfig, TrackingConfig
from runners.contracts import RESULT_FILE, Result
from runners.errors import UsageError
from runners.tracking.write import GROUP_TAGS, TAGS, client_for

TAG_KEYS = {*TAGS, *GROUP_TAGS}  # anything else with a dot (workload.batch_size) is a param
_PARAM_KEYS = {"seed", "timeout_s", "tenants", "repeats", "profile", "profile_steps"}
PAGE_SIZE = 1000


def parse_side(spec: str) -> dict[str, str]:
    """One side of a comparison: space-separated key=value filters, a value with spaces
    quoted: `label='release 2.4' backend=native` -> {"label": "release 2.4", "backend": "native"}."""
    try:
        words = shlex.split(spec or "")
    except ValueError as exc:
        raise UsageError(f"a side is key=value filters, got {spec!r} ({exc})") from None
    filters = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"a side is key=value filters such as backend=native or label='release 2.4', got {spec!r}")
        filters[key] = value
    if not filters:
        raise UsageError("a side needs at least one key=value, such as backend=native")
    return filters


def normalized_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tags of runs logged before schema 2 (repeat_group, tenant_group, workload=probe) in today's names."""
    tags = dict(tags)
    if "repeat_group" in tags and "group_kind" not in tags:
        tags.update(group_kind="repeats", group_id=tags["repeat_group"], group_index=tags.get("repeat_index", ""))
    if "tenant_group" in tags and "group_kind" not in tags and "run_id" in tags:
        tags.update(group_kind="tenants", group_id=tags["tenant_group"], group_role=tags.get("tenant_role", ""))
    if "task" not in tags and "run_id" in tags:
        tags["task"] = tags.get("workload") if tags.get("workload") in ("probe", "microbench") else "workload"
    return tags


def _clause(key: str, value: str) -> str:
    quoted = value.replace("'", "\\'")
    if key.startswith(("tags.", "params.")):
        return f"{key} = '{quoted}'"
    if key in TAG_KEYS:
        return f"tags.{key} = '{quoted}'"
    if "." in key or key in _PARAM_KEYS or key in BenchConfig.__dataclass_fields__:
        return f"params.{key} = '{quoted}'"
    raise UsageError(
        f"unknown side key '{key}'. Valid: {', '.join(sorted(TAG_KEYS))}, or a config key such as "
        f"workload.batch_size or backend.threads"
    )


@dataclass
class Run:
    mlflow_id: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    start_time: int
    _result: Optional[Result] = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, ...]:
        """What a comparison pairs on."""
        return (
            self.tags.get("model", "?"),
            self.tags.get("workload", "?"),
            self.params.get("workload.precision", "?"),
            self.params.get("workload.batch_size", "?"),
            self.tags.get("model_size", "?"),
        )

    @property
    def batch_size(self) -> int:
        return int(self.params.get("workload.batch_size", "1"))


class Store:
    def __init__(self, tracking: TrackingConfig, results_dir: Path):
        self.results_dir = Path(results_dir).resolve()
        self.tracking = tracking
        self.client, self.experiment_id = client_for(self.tracking, self.results_dir)
        self._seen: dict[str, Run] = {}  # by the suite's run id: a run found once keeps its loaded result
        self._noise: dict[tuple, Optional[tuple[float, int]]] = {}  # run_to_run_cv, by configuration

    def runs(self, filters: dict[str, str]) -> list[Run]:
        """Successful single runs (not tenants, groups or comparisons) matching `filters`, newest first."""
        clauses = [_clause(k, v) for k, v in filters.items()] + ["tags.status = 'success'"]
        runs = []
        for r in self._search(" and ".join(clauses)):
            tags = normalized_tags(r.data.tags)
            if "run_id" in tags and tags.get("group_kind") != "tenants" and tags["task"] not in ("probe", "parity"):
                run = self._seen.setdefault(
                    tags["run_id"],
                    Run(r.info.run_id, dict(tags), dict(r.data.params), dict(r.data.metrics), r.info.start_time),
                )
                runs.append(run)
        return runs

    def invalid(self, filters: dict[str, str]) -> list[str]:
        """Runs matching `filters` that ran but whose layer did not engage: `<name> (<run id>): <why>`."""
        clauses = [_clause(k, v) for k, v in filters.items()] + ["tags.status = 'invalid'"]
        return [
            f"{r.info.run_name} ({r.data.tags.get('run_id')}): {r.data.tags.get('engagement', '')}"
            for r in self._search(" and ".join(clauses))
        ]

    def _search(self, filter_string: str) -> list:
        """Every matching run, page by page: nothing is cut off at a page's end."""
        found, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=filter_string,
                order_by=["attributes.start_time DESC"],
                max_results=PAGE_SIZE,
                page_token=token,
            )
            found.extend(page)
            token = page.token
            if not token:
                return found

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
        like = {
            "model": run.tags.get("model", ""),
            "workload": run.tags.get("workload", ""),
            "model_size": run.tags.get("model_size", ""),
            "backend": run.tags.get("backend", ""),
            "device_name": run.tags.get("device_name", ""),
            "workload.precision": run.params.get("workload.precision", ""),
            "workload.batch_size": run.params.get("workload.batch_size", ""),
        }
        key = tuple(like.values())
        if key not in self._noise:  # both sides of a pair often share a configuration
            self._noise[key] = self._newest_repeat_cv(like)
        return self._noise[key]

    def _newest_repeat_cv(self, filters: dict[str, str]) -> Optional[tuple[float, int]]:
        groups: dict[str, list[float]] = {}
        for found in self.runs(filters):  # newest first, so the first group of two or more is the newest
            if found.tags.get("group_kind") == "repeats":
                groups.setdefault(found.tags["group_id"], []).append(found.metrics["throughput"])
        for throughputs in groups.values():
            if len(throughputs) >= 2:
                return statistics.stdev(throughputs) / statistics.fmean(throughputs), len(throughputs)
        return None

    def result(self, run: Run) -> Result:
        """The run's result file (schema 1 or 2): the local copy when there is one, else its MLflow artifact."""
        if run._result is None:
            local = self.results_dir / "runs" / run.tags["run_id"] / RESULT_FILE
            if not local.exists():
                local = Path(self.client.download_artifacts(run.mlflow_id, RESULT_FILE))
            run._result = Result.load(local)
        return run._result
