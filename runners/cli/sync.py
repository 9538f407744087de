"""`python -m runners.cli.sync [dir=<dir>]`: `make sync` logs every result marked unsynced
(the store was unreachable or locked when it ran); `make ingest DIR=<dir>` logs every
result file under a directory (a GPU host without MLflow, a cluster whose nodes could not
reach the store). Both are idempotent."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from runners.config import SyncConfig
from runners.errors import USER_ERRORS, UsageError, one_line
from runners.parent import compose
from runners.tracking.sync import ingest, result_files, unsynced


def main(argv: Optional[list[str]] = None) -> int:
    try:
        config: SyncConfig = compose.command_config(sys.argv[1:] if argv is None else argv, "sync")
        if config.dir and not Path(config.dir).is_dir():
            raise UsageError(f"dir={config.dir} is not a directory")
    except USER_ERRORS as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    results_dir = Path(config.results_dir).resolve()
    paths = result_files(Path(config.dir)) if config.dir else unsynced(results_dir)
    try:
        logged, skipped, errors = ingest(paths, config.tracking, results_dir)
    except Exception as exc:  # the store is still unreachable: nothing is lost, try again later
        print(f"error: could not reach the tracking store: {exc}", file=sys.stderr)
        return 1
    print(f"{logged} logged, {skipped} already in the store, {len(errors)} unreadable")
    for error in errors:
        print(f"  {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
