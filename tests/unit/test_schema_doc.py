"""docs/results_schema.md and the code say the same: every field of every record, every
declared metric with its unit. A field or metric added without its line fails here."""

import dataclasses
import fnmatch
import re
from pathlib import Path

import pytest

from runners import contracts
from runners.names import all_metrics

DOC = (Path(__file__).resolve().parents[2] / "docs" / "results_schema.md").read_text()
RECORDS = [
    contracts.Result,
    contracts.Evidence,
    contracts.Check,
    contracts.ErrorRecord,
    contracts.ModelRecord,
    contracts.DeviceRecord,
    contracts.MemoryReading,
    contracts.Measurement,
    contracts.GroupRef,
    contracts.Environment,
    contracts.Quantity,
    contracts.Job,
    contracts.TenantBarrier,
    contracts.GroupRecord,
    contracts.GroupMember,
]


def _table(section: str) -> list[list[str]]:
    """The rows of the first table under `## section`, as cells."""
    body = DOC.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.__name__)
def test_every_field_of_every_record_is_documented(record):
    documented = [name for row in _table(f"`{record.__name__}`") for name in _names(row[0])]
    assert sorted(documented) == sorted(f.name for f in dataclasses.fields(record))


def test_every_record_that_crosses_a_boundary_has_a_section():
    for name, value in vars(contracts).items():
        if dataclasses.is_dataclass(value) and value.__module__ == contracts.__name__ and name != "Metric":
            assert f"## `{name}`" in DOC, name


def test_every_metric_is_documented_with_its_unit():
    rows = [(_names(row[0]), row[1]) for row in _table("Metrics")]
    patterns = {pattern: unit for names, unit in rows for pattern in names}
    metrics = all_metrics()
    for metric in metrics.values():
        matching = [p for p in patterns if fnmatch.fnmatchcase(metric.name, p)]
        assert len(matching) == 1, f"{metric.name}: documented as {matching}"
        assert patterns[matching[0]] == metric.unit, metric.name
    for pattern in patterns:
        assert any(fnmatch.fnmatchcase(name, pattern) for name in metrics), f"{pattern} documents no metric"
