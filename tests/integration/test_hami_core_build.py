"""`make hami-core SRC=...`: HAMi-core's libvgpu.so built offline (scripts/build_hami_core.sh).
The full build runs when VGPU_BENCH_HAMI_SRC names a HAMi-core source folder (and the CUDA
headers are at hand: /usr/local/cuda, or the wheels in build/hami-core-deps), so the recipe
cannot rot where it is set; without it only the refusals run."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / "scripts" / "build_hami_core.sh"
# What backend=hami needs of the library: the CUDA and NVML entry points it intercepts, and
# dlsym (a Release build exports only dlsym: the hooks would never be found).
HOOKS = {"cuMemAlloc_v2", "cuMemGetInfo_v2", "cuLaunchKernel", "nvmlDeviceGetMemoryInfo", "dlsym"}


def _build(src: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SCRIPT), src, str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)


def test_a_folder_that_is_not_hami_core_is_refused_in_one_line(tmp_path):
    done = _build(str(tmp_path), tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"make hami-core: {tmp_path} is not a HAMi-core source folder")


@pytest.mark.skipif(not os.environ.get("VGPU_BENCH_HAMI_SRC"), reason="VGPU_BENCH_HAMI_SRC names no HAMi-core source")
@pytest.mark.skipif(not (shutil.which("cmake") and shutil.which("nm")), reason="needs cmake and nm")
def test_the_recipe_builds_a_library_that_exports_the_hooks(tmp_path):
    done = _build(os.environ["VGPU_BENCH_HAMI_SRC"], tmp_path / "hami-core")
    assert done.returncode == 0, done.stderr[-2000:]
    library = tmp_path / "hami-core" / "libvgpu.so"
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True).stdout
    assert HOOKS <= {line.split()[-1] for line in symbols.splitlines() if line.strip()}
    needed = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True).stdout
    assert "libcuda.so]" not in needed  # the link stubs' own name is never asked for at run time
    assert (tmp_path / "hami-core" / "SOURCE_COMMIT").read_text().strip()
