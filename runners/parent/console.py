"""What the user sees: a live status line while a worker runs, a table at the end."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.table import Table

from runners.contracts import INVALID, Result

console = Console(stderr=True, soft_wrap=True)  # paths must stay greppable


@dataclass
class Finished:
    """A run this command ended: its result, where it lives, whether it reached the store."""

    result: Result
    run_dir: Path
    tracked: bool


@contextlib.contextmanager
def progress(run_name: str) -> Iterator[Callable[[str], None]]:
    started = time.monotonic()
    with console.status(f"{run_name}: starting worker") as status:

        def update(line: str) -> None:
            status.update(f"{run_name} [{time.monotonic() - started:.0f}s] {line}")

        yield update


_NUMERIC = {"throughput", "p50 ms", "p99 ms", "start-up s", "J/sample", "memory MiB"}


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) else "-"


def _serve_invalid(result: Result) -> str:
    return (result.details.get("serve") or {}).get("invalid_because") or ""


def invalid_because(result: Result) -> str:
    """A serve run too short to be valid, or a layer that did not engage."""
    return _serve_invalid(result) or (result.evidence.verdict if result.evidence else "no evidence of the backend")


def status_line(result: Result) -> str:
    if result.ok:
        warning = result.evidence and not result.evidence.engaged
        return f"ok (warning, engagement not required: {result.evidence.verdict})" if warning else "ok"
    if result.status == INVALID:
        return f"INVALID ({invalid_because(result)})"
    return f"FAILED ({result.error.type}: {result.error.message})" if result.error else "FAILED"


def summary_table(rows: list[Finished]) -> Table:
    table = Table(title="vgpu-bench results")
    columns = ("run", "workload", "backend", "device", "throughput", "p50 ms", "p99 ms", "start-up s", "J/sample")
    for column in (*columns, "memory MiB", "status"):
        table.add_column(column, justify="right" if column in _NUMERIC else "left")
    for row in rows:
        result = row.result
        throughput = result.metrics.get("throughput")
        status = result.status if not result.error else f"failed: {result.error.type}"
        if result.status == INVALID:
            status = "INVALID: " + ("too short" if _serve_invalid(result) else "layer not engaged")
        name = result.model.name if result.model else result.task
        table.add_row(
            name + (f" ({result.display_name[len(result.run_name) + 1 :]})" if result.group else ""),
            result.workload or result.task,
            result.backend["name"],
            str(result.device.name or "-"),
            f"{_fmt(throughput.value if throughput else None)} {throughput.unit if throughput else ''}".strip(),
            _fmt(result.value("latency_ms_p50")),
            _fmt(result.value("latency_ms_p99")),
            _fmt(result.value("time_to_first_step_s"), 1),
            _fmt(result.value("energy_j_per_sample"), 3),
            _fmt(result.value("memory_peak_mb"), 0),
            status,
        )
    return table


def print_summary(rows: list[Finished]) -> None:
    if rows:
        out = Console()
        if not out.is_terminal:
            out.width = max(out.width, 200)  # logs and CI: do not squeeze the table to 80 columns
        out.print(summary_table(rows))
