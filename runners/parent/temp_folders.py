"""Temporary folders of the parent's making: each run's own (its TMPDIR), and where they go."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from runners.backends.mps import SOCKET_PATH_MAX  # the kernel's limit, which the MPS pipes obey too

# multiprocessing puts its sockets (a DataLoader worker's) at <TMPDIR>/pymp-XXXXXXXX/listener-XXXXXXXX
_SOCKET_IN_TMPDIR = len("/pymp-XXXXXXXX/listener-XXXXXXXX")


def temporary_base() -> str:
    """Where runs' temporary folders go: the user's temporary folder, or /tmp where a socket
    in a folder of its would not fit (Python 3.11 and 3.12's multiprocessing has no fallback
    of its own: `AF_UNIX path too long`)."""
    base = tempfile.gettempdir()
    fits = len(os.fsencode(base)) + len("/vb-XXXXXXXX") + _SOCKET_IN_TMPDIR <= SOCKET_PATH_MAX
    return base if fits else "/tmp"


@contextlib.contextmanager
def temporary_folder() -> Iterator[Path]:
    """A run's own temporary folder, its processes' TMPDIR, removed once the run has ended:
    what they leave there (the sockets of a DataLoader's workers, which a worker ends without
    tearing down; torchrun's logs; torch's compile caches) goes with it, and no run finds
    another's."""
    path = Path(tempfile.mkdtemp(prefix="vb-", dir=temporary_base()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
