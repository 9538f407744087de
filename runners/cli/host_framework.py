"""Which deep-learning framework the Python that `make setup` uses already has.

Run by the Makefile with that Python, before any virtual environment exists (standard
library only, so `python runners/cli/host_framework.py` works anywhere). Prints one line
per CUDA-capable framework it imports, e.g. `torch 2.11.0+cu130 (CUDA 13.0)`, and nothing
when there is none; `--any` also counts CPU builds (make setup FRAMEWORK=host). Each
framework is imported in a child process: a broken installation must not stop setup."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

# One expression per framework: its version and, for a CUDA build, the CUDA version it was built with.
PROBES = {
    "torch": "import torch; print(torch.__version__); print(torch.version.cuda or '')",
    "tensorflow": (
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'; import tensorflow as tf; print(tf.__version__);"
        " print(tf.sysconfig.get_build_info().get('cuda_version', '') if tf.test.is_built_with_cuda() else '')"
    ),
}


def host_frameworks(any_build: bool = False) -> list[str]:
    found = []
    for name, probe in PROBES.items():
        if importlib.util.find_spec(name) is None:
            continue
        try:
            done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            continue
        lines = done.stdout.split("\n")
        if done.returncode != 0 or len(lines) < 2:
            continue
        version, cuda = lines[0].strip(), lines[1].strip()
        if cuda or any_build:
            found.append(f"{name} {version}" + (f" (CUDA {cuda})" if cuda else " (CPU build)"))
    return found


if __name__ == "__main__":
    for line in host_frameworks(any_build="--any" in sys.argv[1:]):
        print(line)
