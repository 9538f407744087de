"""Backend diagnostics: measurements of a GPU backend itself, with no model and no
workload (`make probe`, `make microbench`; configs/diagnostic/). Each runs in a worker on
the backend's GPU, like a workload, and its figures are metrics of a Result, so
comparisons and overhead attribution read them like any other run."""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from zoo.registry import Registry


class Diagnostic:
    name: ClassVar[str]
    summary: ClassVar[str]

    @staticmethod
    def run(job: Any, result: Any, log: Callable[[str], None]) -> None:
        raise NotImplementedError


diagnostics: Registry[type[Diagnostic]] = Registry("diagnostic")

from runners.diagnostics import microbench, probe  # noqa: E402,F401  (registers the diagnostics)
