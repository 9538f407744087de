"""Reading recorded runs back from MLflow (for comparisons, regressions, reports)."""

from __future__ import annotations

import shlex
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from runners.config import BenchConfig, TrackingConfig
from runners.contracts import RESULT_FILE, Result
from runners.errors import UsageError
from runners.stats import RunNoise
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


def clause(key: str, value: str) -> str:
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


# How long to measure, what to call a run, its seed or the worker's extra environment (a
# vendor's token, the self-test's fault switch) leave the work of a step alike.
NOT_WORK = {
    "workload.kind",  # the workload tag
    "workload.warmup_steps",
    "workload.min_steps",
    "workload.min_duration_s",
    "workload.max_duration_s",
    "workload.target_ci",
    "backend.name",  # the backend tag
    "backend.require_engagement",
}
# How long a serve run lasts, how its load is generated, how a search proceeds: the same load.
SERVE_NOT_WORK = {
    "serve.duration_s",
    "serve.min_duration_s",
    "serve.min_requests",
    "serve.drain_s",
    "serve.generators",
    "serve.search_max_runs",
    "serve.search_tolerance",
}
# Settings logged only since they exist: older runs ran with these values.
HISTORIC = {
    "workload.inputs": "device",
    "workload.sync": "step",
    "workload.compile": "none",
    "workload.tf_mode": "graph",
}


def work_settings(run: "Run") -> dict[str, str]:
    """The settings that change a step's work, with the knobs that do nothing in the run's mode
    left out (sync_every without sync=window, loader_workers without inputs=loader...)."""
    settings = {k: run.tags.get(k, "?") for k in ("model", "workload", "model_size", "backend", "device_name")}
    settings["runtime"] = run.tags.get("runtime") or run.tags.get("framework", "?")  # runs before runtimes: their own
    for key, value in run.params.items():
        if (
            key.startswith(("workload.", "backend.", "runtime."))
            and key != "runtime.name"  # the runtime tag, resolved
            and key not in NOT_WORK
            and not key.startswith("backend.extra_env")
        ):
            settings[key] = value
    for key, value in HISTORIC.items():
        settings.setdefault(key, value)
    if run.tags.get("workload") == "serve":  # its load (serve.rate ...) is its work too
        settings.update({k: v for k, v in run.params.items() if k.startswith("serve.") and k not in SERVE_NOT_WORK})
    idle = []
    if settings["workload.sync"] != "window":
        idle.append("workload.sync_every")
    if settings["workload.inputs"] != "loader":
        idle.append("workload.loader_workers")
    if settings["workload.inputs"] == "device":
        idle.append("workload.pinned")
    if settings["runtime"] not in ("onnxruntime", "mnn"):  # its provider and opset: of an export only
        idle += ["runtime.provider", "runtime.opset"]
    framework = run.tags.get("framework")
    idle += [k for k, fw in (("workload.tf_mode", "tensorflow"), ("workload.compile", "pytorch")) if framework != fw]
    inputs = _inputs_of(settings["model"])
    idle += [k for k, kind in (("workload.seq_len", "text"), ("workload.image_size", "image")) if inputs != kind]
    for key in idle:
        settings.pop(key, None)
    return settings


def _inputs_of(model: str) -> str:
    import zoo

    try:
        return zoo.get(model).inputs
    except Exception:  # a model no longer in the zoo: every shape setting counts
        return "unknown"


def _excluded(key: str, sides: frozenset[str]) -> bool:
    """A setting the sides are defined by: named by a side, or belonging to a backend (a runtime)
    when the sides differ in their backend (runtime): each has knobs of its own."""
    if key in sides or key.removeprefix("params.").removeprefix("tags.") in sides:
        return True
    if "runtime" in sides and key.startswith("runtime."):  # each runtime has knobs of its own
        return True
    return "backend" in sides and (key.startswith("backend.") or key == "device_name")


@dataclass
class Run:
    mlflow_id: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    start_time: int
    _result: Optional[Result] = field(default=None, repr=False)

    def work(self, exclude: frozenset[str] = frozenset()) -> tuple[tuple[str, str], ...]:
        """What a comparison pairs on: every setting that changes what a step does and where it
        runs (runners/tracking/read.py: work_settings), less the keys that define the sides."""
        return tuple(sorted((k, v) for k, v in work_settings(self).items() if not _excluded(k, exclude)))

    @property
    def key(self) -> tuple[str, ...]:
        """The headline of a pair: model, workload, precision, batch size, size."""
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
        self._noise: dict[tuple, Optional[RunNoise]] = {}  # run_to_run_cv, by the work it measured

    def runs(self, filters: dict[str, str]) -> list[Run]:
        """Successful single runs (not tenants, groups or comparisons) matching `filters`, newest first."""
        clauses = [clause(k, v) for k, v in filters.items()] + ["tags.status = 'success'"]
        runs = []
        for r in self.search(" and ".join(clauses)):
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
        clauses = [clause(k, v) for k, v in filters.items()] + ["tags.status = 'invalid'"]
        return [
            f"{r.info.run_name} ({r.data.tags.get('run_id')}): {r.data.tags.get('engagement', '')}"
            for r in self.search(" and ".join(clauses))
        ]

    def search(self, filter_string: str) -> list:
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

    def run_to_run_cv(self, run: Run) -> Optional[RunNoise]:
        """The run-to-run variation (stdev / mean of throughput) measured for `run`'s work (every
        setting that changes it, on its backend and device), and over how many runs: from the
        newest `repeats=N` group of such runs, None when there is none. One run cannot show
        this variation, however many steps it measured."""
        work = run.work()
        if work not in self._noise:  # both sides of a pair often share a configuration
            like = {k: run.tags.get(k, "") for k in ("model", "workload", "model_size", "backend", "device_name")}
            groups: dict[str, list[float]] = {}
            for found in self.runs(like):  # newest first, so the first group of two or more is the newest
                if found.tags.get("group_kind") == "repeats" and found.work() == work:
                    groups.setdefault(found.tags["group_id"], []).append(found.metrics["throughput"])
            self._noise[work] = next(
                (
                    RunNoise(statistics.stdev(values) / statistics.fmean(values), len(values), group)
                    for group, values in groups.items()
                    if len(values) >= 2
                ),
                None,
            )
        return self._noise[work]

    def result(self, run: Run) -> Result:
        """The run's result file (schema 1 or 2): the local copy when there is one, else its MLflow artifact."""
        if run._result is None:
            local = self.results_dir / "runs" / run.tags["run_id"] / RESULT_FILE
            if local.exists():
                run._result = Result.load(local)
            else:  # into a folder of its own that goes with it: MLflow's default one stays behind in /tmp
                with tempfile.TemporaryDirectory(prefix="vb-artifact-") as folder:
                    run._result = Result.load(Path(self.client.download_artifacts(run.mlflow_id, RESULT_FILE, folder)))
        return run._result
