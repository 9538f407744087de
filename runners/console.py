"""What the user sees: a live status line while a worker runs, a table at the end."""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, soft_wrap=True)  # paths must stay greppable


@contextlib.contextmanager
def progress(run_name: str) -> Iterator[Callable[[str], None]]:
    started = time.monotonic()
    with console.status(f"{run_name}: starting worker") as status:
        def update(line: str) -> None:
            status.update(f"{run_name} [{time.monotonic() - started:.0f}s] {line}")

        yield update


_NUMERIC = {"throughput", "p50 ms", "p99 ms", "memory MiB"}


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) else "-"


def summary_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="vgpu-bench results")
    for column in ("model", "workload", "backend", "device", "throughput", "p50 ms", "p99 ms", "memory MiB", "status"):
        table.add_column(column, justify="right" if column in _NUMERIC else "left")
    for row in rows:
        result, metrics = row["result"], row["result"]["metrics"]
        unit = result["units"].get("throughput", "")
        status = result["status"] if not result["error"] else f"failed: {result['error']['type']}"
        tenant = result.get("tenant")
        role = f" ({'alone' if tenant['role'] == 'alone' else 't' + str(tenant['index'])})" if tenant else ""
        table.add_row(
            result["model"]["name"] + role, result["workload"], result["backend"]["name"], str(result["device"].get("name") or "-"),
            f"{_fmt(metrics.get('throughput'))} {unit}".strip(), _fmt(metrics.get("latency_ms_p50")),
            _fmt(metrics.get("latency_ms_p99")), _fmt(metrics.get("memory_peak_mb"), 0),
            status,
        )
    return table


def print_summary(rows: list[dict[str, Any]]) -> None:
    if rows:
        out = Console()
        if not out.is_terminal:
            out.width = max(out.width, 150)  # logs and CI: do not squeeze the table to 80 columns
        out.print(summary_table(rows))
