"""Which suite ran: its version and commit (recorded with every job)."""

from __future__ import annotations

import importlib.metadata
import subprocess

from runners import REPO_ROOT


def suite_version() -> str:
    try:
        return importlib.metadata.version("vgpu-bench")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def git_commit() -> str:
    """The suite's commit, with `+dirty` when the tree has uncommitted changes."""
    try:
        run = lambda *args: subprocess.run(  # noqa: E731
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        return commit + ("+dirty" if run("status", "--porcelain", "--untracked-files=no") else "")
    except Exception:
        return "unknown"


def describe() -> dict[str, str]:
    return {"version": suite_version(), "git_commit": git_commit()}
