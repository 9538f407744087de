"""What the user sees: a live status line while a worker runs, a table at the end."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from rich.console import Console
from rich.table import Table

from runners.contracts import INVALID, SUCCESS, GroupRecord, Result

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


def _probe_invalid(result: Result) -> str:
    return (result.details.get("probe") or {}).get("invalid_because") or ""


def invalid_because(result: Result) -> str:
    """A serve run too short to be valid, a quota that did not hold, or a layer that did not engage."""
    return (
        _serve_invalid(result)
        or _probe_invalid(result)
        or (result.evidence.verdict if result.evidence else "no evidence of the backend")
    )


def group_lines(group: Optional[GroupRecord]) -> list[str]:
    """A probe group's verdict (configured vs achieved), and why a group is not a success."""
    if group is None:
        return []
    if group.status == INVALID:  # its reason is the verdict line
        return [f"{group.id}: INVALID ({group.details.get('invalid_because', 'no reason recorded')})"]
    if group.status != SUCCESS and group.details.get("invalid_because"):
        return [f"{group.id}: FAILED ({group.details['invalid_because']})"]
    verdict = group.details.get("compute_share_verdict")
    return [f"{group.id}: {verdict}"] if verdict else []


def status_line(result: Result, group: Optional[GroupRecord] = None) -> str:
    if result.ok and group is not None and group.status == INVALID:  # measured; the group's verdict failed
        return f"INVALID ({group.details.get('invalid_because', 'its group is invalid')})"
    if result.ok:
        warning = result.evidence and not result.evidence.engaged
        return f"ok (warning, engagement not required: {result.evidence.verdict})" if warning else "ok"
    if result.status == INVALID:
        return f"INVALID ({invalid_because(result)})"
    return f"FAILED ({result.error.type}: {result.error.message})" if result.error else "FAILED"


def _table_status(result: Result, invalid_groups: dict[str, GroupRecord]) -> str:
    if result.group and result.group.id in invalid_groups:  # the run measured; its group's verdict failed
        return "INVALID: quota does not hold"
    if result.status == INVALID:
        if _serve_invalid(result):
            return "INVALID: too short"
        if _probe_invalid(result):
            return "INVALID: quota does not hold"
        failed = {c.name for c in result.evidence.checks if not c.passed} if result.evidence else set()
        return "INVALID: " + ("compiled mode fell back" if "compiled_mode_ran" in failed else "layer not engaged")
    return result.status if not result.error else f"failed: {result.error.type}"


def summary_table(rows: list[Finished], groups: Iterable[Optional[GroupRecord]] = ()) -> Table:
    """The runs; a run whose group's verdict failed (a probe's compute share) shows that verdict."""
    invalid_groups = {g.id: g for g in groups if g is not None and g.status == INVALID}
    table = Table(title="vgpu-bench results")
    columns = ("run", "workload", "backend", "device", "throughput", "p50 ms", "p99 ms", "start-up s", "J/sample")
    for column in (*columns, "memory MiB", "status"):
        table.add_column(column, justify="right" if column in _NUMERIC else "left")
    for row in rows:
        result = row.result
        throughput = result.metrics.get("throughput")
        status = _table_status(result, invalid_groups)
        name = f"{result.model.name} {result.model.size}" if result.model else result.task  # which size ran
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


def print_summary(rows: list[Finished], groups: Iterable[Optional[GroupRecord]] = ()) -> None:
    if rows:
        out = Console()
        if not out.is_terminal:
            out.width = max(out.width, 200)  # logs and CI: do not squeeze the table to 80 columns
        out.print(summary_table(rows, groups))
