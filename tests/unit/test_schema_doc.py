"""docs/results_schema.md and the code say the same: every field of every record, every
declared metric with its unit. A field or metric added without its line fails here."""

import dataclasses
import fnmatch
import importlib
import re
from pathlib import Path

import pytest

from runners import contracts

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "results_schema.md").read_text()
# A module that imports the contract's Metric and calls it declares metrics.
IMPORTS_METRIC = re.compile(r"^from runners\.contracts import [^\n]*\bMetric\b", re.MULTILINE)
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


def declaring_modules() -> list[str]:
    """Every module of the suite whose source declares a metric, found by reading the files:
    a module added later is seen without a list to keep (runners/names.py stays a leaf)."""
    paths = [p for root in ("runners", "zoo") for p in sorted((REPO / root).rglob("*.py"))]
    modules = [".".join(p.relative_to(REPO).with_suffix("").parts) for p in paths if _declares(p.read_text())]
    return [m.removesuffix(".__init__") for m in modules]


def _declares(source: str) -> bool:
    return bool(IMPORTS_METRIC.search(source)) and "Metric(" in source


def all_metrics() -> dict[str, contracts.Metric]:
    for module in declaring_modules():
        importlib.import_module(module)
    return dict(contracts.Metric.registry)


def test_the_collector_finds_the_declaring_modules():
    found = declaring_modules()
    for module in ("runners.names", "runners.diagnostics.probe", "runners.worker.startup", "runners.serving.slo"):
        assert module in found
    assert "runners.contracts" not in found and "runners.worker.main" not in found


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
