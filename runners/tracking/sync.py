"""Logging results that did not reach the store when they ran. Idempotent: a result whose
run id is already in the store is skipped, so each lands exactly once."""

from __future__ import annotations

from pathlib import Path

from runners.config import TrackingConfig
from runners.contracts import RESULT_FILE, Result
from runners.tracking.write import UNSYNCED_FILE, client_for, find_logged, log_result


def unsynced(results_dir: Path) -> list[Path]:
    """The result files marked unsynced under results_dir/runs."""
    return sorted(p.parent / RESULT_FILE for p in (results_dir / "runs").glob(f"*/{UNSYNCED_FILE}"))


def result_files(root: Path) -> list[Path]:
    """Every result file under `root` (a copied results folder, a cluster's shared storage)."""
    return sorted(root.rglob(RESULT_FILE))


def ingest(paths: list[Path], tracking: TrackingConfig, results_dir: Path) -> tuple[int, int, list[str]]:
    """(logged, already there, errors) for the result files at `paths`, of schema 1 or 2."""
    logged = skipped = 0
    errors = []
    client, experiment_id = client_for(tracking, results_dir)
    for path in paths:
        try:
            result = Result.load(path)
        except (ValueError, OSError, TypeError, KeyError) as exc:
            errors.append(f"{path}: {exc}")
            continue
        if find_logged(client, experiment_id, result.run_id):
            skipped += 1
            (path.parent / UNSYNCED_FILE).unlink(missing_ok=True)
            continue
        log_result(result, path.parent, tracking, results_dir)
        logged += 1
    return logged, skipped, errors
