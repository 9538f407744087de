"""Scenarios: what a workload kind is. One module per kind holds its knobs (a
WorkloadConfig subclass, configs/workload/<name>.yaml), what the parent checks and plans
for it, what the worker does for it (builds the step from the framework adapter), and the
figures derived from its measurement. Adding a kind is a module here, its YAML file and
its tests (docs/architecture.md). Frameworks are imported by the adapters, lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

from runners.config import BenchConfig, WorkloadConfig
from zoo.registry import Registry

if TYPE_CHECKING:
    from runners.contracts import GroupRecord, Result
    from runners.worker.measure import Measurement


class Scenario:
    name: ClassVar[str]
    config_class: ClassVar[type[WorkloadConfig]] = WorkloadConfig
    summary: ClassVar[str] = ""
    # Forward passes per sample that the work costs, for model FLOPs utilization; None: no MFU.
    flops_factor: ClassVar[Optional[float]] = None
    # False: a fixed number of steps (min_steps), the same on every process, not a duration.
    time_limited: ClassVar[bool] = True
    # The zoo workload a model must have for this kind; None: the kind's own name.
    model_workload: ClassVar[Optional[str]] = None

    # -- in the parent ----------------------------------------------------------------------
    def check(self, config: BenchConfig, entry: Any, backend: Any) -> None:
        """Raise UsageError for a combination this kind cannot run (planning, before anything runs)."""

    def extra_tokens(self, workload: WorkloadConfig) -> int:
        """Tokens beyond seq_len that the model must take (generation)."""
        return 0

    def plan(self, config: BenchConfig, device: str) -> BenchConfig:
        """The config as it will run, where the kind decides something (shown by the dry run)."""
        return config

    def ranks(self, workload: WorkloadConfig) -> Optional[int]:
        """Processes per run, started by torchrun; None: one plain worker process."""
        return None

    def reference(self, config: BenchConfig) -> Optional[BenchConfig]:
        """A run to make first, as the reference of a figure of the group (scaling)."""
        return None

    def summarize(self, reference: "Result", run: "Result", group: "GroupRecord") -> None:
        """The group's figures from the reference and the run (both successful)."""

    # A kind whose figures of co-located tenants differ from throughput slowdown and fairness
    # (serve: goodput and p99 per tenant) defines summarize_tenants(group, alone, tenants).
    summarize_tenants: ClassVar[Optional[Callable[..., None]]] = None

    # -- in the worker ----------------------------------------------------------------------
    def build_step(
        self, framework: Any, entry: Any, workload: WorkloadConfig, shape: Any, seed: int
    ) -> Callable[[], Any]:
        raise NotImplementedError

    # A kind that runs the worker's whole job itself instead of a timed step (serve: a server)
    # defines run_worker(job, config, framework, entry, shape, result, wait_for_tenants, log).
    run_worker: ClassVar[Optional[Callable[..., None]]] = None

    def throughput(self, own: float, result: "Result") -> float:
        """The run's throughput from this process's own (data parallel: the sum over ranks)."""
        return own

    def derive(self, result: "Result", framework: Any, workload: WorkloadConfig, m: "Measurement") -> None:
        """Figures of this kind, from the measurement (generation latencies...)."""


scenarios: Registry[type[Scenario]] = Registry("workload")

from runners.scenarios import generate, infer, serve, train, train_ddp  # noqa: E402,F401  (registers the kinds)
