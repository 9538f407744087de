"""`make sync` logs every result marked unsynced (the store was unreachable or locked
when it ran); `make ingest DIR=<dir>` logs every result file under a directory (jobs of
a cluster whose nodes could not reach the store). Both are idempotent: a result whose
run id is already in the store is skipped, so each lands exactly once."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runners import results
from runners.config import TrackingConfig
from runners.stores import default_results_dir
from runners.tracking import UNSYNCED_FILE, _client, find_logged, log_result


def ingest(paths: list[Path], tracking: TrackingConfig, results_dir: Path) -> tuple[int, int, list[str]]:
    """(logged, already there, errors) for the result files at `paths`."""
    logged = skipped = 0
    errors = []
    client, experiment_id = _client(tracking, results_dir)
    for path in paths:
        try:
            result = results.load(path)
        except (ValueError, OSError) as exc:
            errors.append(f"{path}: {exc}")
            continue
        if find_logged(client, experiment_id, result["run_id"]):
            skipped += 1
            (path.parent / UNSYNCED_FILE).unlink(missing_ok=True)
            continue
        log_result(result, path.parent, tracking, results_dir)
        logged += 1
    return logged, skipped, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runners.sync", description=__doc__)
    parser.add_argument("--dir", default=None, help="ingest every result.json under this directory")
    args = parser.parse_args(argv)
    results_dir = default_results_dir()
    if args.dir:
        root = Path(args.dir)
        if not root.is_dir():
            print(f"error: {root} is not a directory", file=sys.stderr)
            return 2
        paths = sorted(root.rglob(results.RESULT_FILE))
    else:
        paths = sorted(p.parent / results.RESULT_FILE for p in (results_dir / "runs").glob(f"*/{UNSYNCED_FILE}"))
    try:
        logged, skipped, errors = ingest(paths, TrackingConfig(), results_dir)
    except Exception as exc:  # the store is still unreachable: nothing is lost, try again later
        print(f"error: could not reach the tracking store: {exc}", file=sys.stderr)
        return 1
    print(f"{logged} logged, {skipped} already in the store, {len(errors)} unreadable")
    for error in errors:
        print(f"  {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
