"""`make remoting-layer SRC=...`: LUPINE's client shims and server built offline
(scripts/build_lupine.sh). The full build runs when VGPU_BENCH_LUPINE_SRC names a LUPINE
source folder (a clone of github kevmo314/scuda) and the toolchain is at hand (cmake, nvcc
and cuda.h in $CUDA_HOME or /usr/local/cuda, nvml.h there or as the nvidia-nvml-dev wheel in
build/lupine-deps, libnghttp2-dev), so the recipe cannot rot where it is set; it then runs
the built server on the build's stub driver and calls it through the built shim. Without it
only the refusals run."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / "scripts" / "build_lupine.sh"
# What backend=vgpu's LUPINE flavor needs of the shims: the driver entry points a framework
# resolves (directly or through cuGetProcAddress), dlsym (how the shim answers lookups of
# itself), and NVML's init.
DRIVER_SYMBOLS = {"cuInit", "cuLaunchKernel", "cuGetProcAddress_v2", "cuMemAlloc_v2", "dlsym"}
NVML_SYMBOLS = {"nvmlInit_v2", "nvmlDeviceGetCount_v2"}
CUDA_ERROR_STUB_LIBRARY = 34
CUDA_ERROR_DEVICE_UNAVAILABLE = 46


def _build(src: str, out: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(SCRIPT), src, str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, **env},
    )


def _refusal(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def _fake_lupine(root: Path, cmake: str = "add_executable(lupine_driver_server server.cpp)\n") -> Path:
    """A folder with LUPINE's landmarks and nothing buildable: the checks before the build."""
    (root / "codegen").mkdir(parents=True)
    (root / "CMakeLists.txt").write_text(cmake)
    for name in ("server.cpp", "client.cpp", "codegen/gen_client.cpp", "codegen/gen_server.cpp", "codegen/gen_api.h"):
        (root / name).write_text("")
    return root


def test_a_missing_src_is_refused_in_one_line(tmp_path):
    assert _refusal(_build("", tmp_path / "out")).startswith(
        "make remoting-layer: SRC=<LUPINE source folder> is required"
    )
    missing = tmp_path / "nowhere"
    assert _refusal(_build(str(missing), tmp_path / "out")).startswith(
        f"make remoting-layer: SRC={missing} is not a folder"
    )


def test_a_folder_that_is_not_lupine_is_refused_in_one_line(tmp_path):
    (tmp_path / "CMakeLists.txt").write_text("project(Other)\n")
    stderr = _refusal(_build(str(tmp_path), tmp_path / "out"))
    assert stderr.startswith(f"make remoting-layer: {tmp_path} is not a LUPINE source folder")
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_a_source_without_its_generated_rpc_code_is_refused(tmp_path):
    src = _fake_lupine(tmp_path / "src")
    (src / "codegen" / "gen_server.cpp").unlink()
    assert "gen_server.cpp is missing" in _refusal(_build(str(src), tmp_path / "out"))


def test_a_source_that_downloads_at_configure_time_is_refused(tmp_path):
    src = _fake_lupine(tmp_path / "src", "include(FetchContent)\nadd_executable(lupine_driver_server server.cpp)\n")
    assert "downloads at configure time" in _refusal(_build(str(src), tmp_path / "out"))


def test_a_missing_cuda_toolkit_is_named_in_one_line(tmp_path):
    src = _fake_lupine(tmp_path / "src")
    (tmp_path / "out" / "client").mkdir(parents=True)  # a previous build's, kept on refusal
    stderr = _refusal(_build(str(src), tmp_path / "out", CUDA_HOME=str(tmp_path / "no-cuda")))
    assert stderr.startswith(f"make remoting-layer: no CUDA toolkit at {tmp_path / 'no-cuda'}")
    assert (tmp_path / "out" / "client").is_dir()


def test_a_toolkit_without_lib64_is_named_in_one_line(tmp_path):
    """The NVIDIA wheels install lib/ only, and nvcc's profile links from lib64/."""
    src = _fake_lupine(tmp_path / "src")
    toolkit = tmp_path / "cu13"
    (toolkit / "include").mkdir(parents=True)
    (toolkit / "include" / "cuda.h").write_text("")
    (toolkit / "bin").mkdir()
    (toolkit / "bin" / "nvcc").write_text("#!/bin/sh\n")
    (toolkit / "bin" / "nvcc").chmod(0o755)
    (toolkit / "lib").mkdir()
    stderr = _refusal(_build(str(src), tmp_path / "out", CUDA_HOME=str(toolkit)))
    assert stderr.startswith(f"make remoting-layer: {toolkit} has no lib64") and stderr.endswith(
        f"ln -s lib {toolkit}/lib64\n"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exports(library: Path) -> set[str]:
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True).stdout
    return {line.split()[-1] for line in symbols.splitlines() if line.strip()}


def _shim_call(client: Path, server: str) -> tuple[int, int, str]:
    """cuInit and cuDeviceGetCount through the built shim, in a process of their own, with
    the local driver off (as the backend runs it): (cuInit's result, the count's, stderr)."""
    code = (
        "import ctypes, sys\n"
        "lib = ctypes.CDLL(sys.argv[1])\n"
        "count = ctypes.c_int(-1)\n"
        "print(lib.cuInit(0), lib.cuDeviceGetCount(ctypes.byref(count)))\n"
    )
    env = {**os.environ, "LUPINE_SERVER": server, "LUPINE_DISABLE_LOCAL": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(client / "libcuda.so.1")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    init, count = done.stdout.split()
    return int(init), int(count), done.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lupine") / "lupine"
    done = _build(os.environ["VGPU_BENCH_LUPINE_SRC"], out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out


no_source = pytest.mark.skipif(
    not os.environ.get("VGPU_BENCH_LUPINE_SRC"), reason="VGPU_BENCH_LUPINE_SRC names no LUPINE source"
)
no_tools = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("cmake", "nm", "readelf", "stdbuf")),
    reason="needs cmake, nm, readelf and stdbuf",
)


@no_source
@no_tools
def test_the_recipe_builds_shims_that_export_the_driver_and_nvml(built):
    client = built / "client"
    driver = _exports(client / "libcuda.so.1")
    assert DRIVER_SYMBOLS <= driver
    assert not {name for name in driver if name.startswith("cuda")}  # a driver shim, no runtime API
    assert NVML_SYMBOLS <= _exports(client / "libnvidia-ml.so.1")
    for library, soname in (("libcuda.so.1", "libcuda.so.1"), ("libnvidia-ml.so.1", "libnvidia-ml.so.1")):
        dynamic = subprocess.run(["readelf", "-d", str(client / library)], capture_output=True, text=True).stdout
        assert f"Library soname: [{soname}]" in dynamic
    server = built / "server" / "lupine_driver_server"
    dynamic = subprocess.run(["readelf", "-d", str(server)], capture_output=True, text=True).stdout
    assert "Shared library: [libcuda.so.1]" in dynamic  # the host driver's, at run time
    assert "link-stubs" not in dynamic  # no RUNPATH to the link stub
    # A GPU host without libnghttp2 still runs both: a copy next to each, found by RUNPATH.
    assert "Library runpath: [$ORIGIN]" in dynamic
    assert (client / "libnghttp2.so.14").is_file() and (built / "server" / "libnghttp2.so.14").is_file()
    info = dict(line.split("=", 1) for line in (built / "BUILD_INFO").read_text().splitlines())
    source_commit = subprocess.run(
        ["git", "-C", os.environ["VGPU_BENCH_LUPINE_SRC"], "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert info["source_commit"] == (source_commit or "unknown")
    assert info["build_type"] == "Release" and info["cuda_version"].count(".") == 2
    assert (built / info["server"]).is_file() and (built / info["client_libcuda"]).is_file()


@no_source
@no_tools
def test_the_built_shim_reaches_the_built_server(built, tmp_path):
    """The server runs here on the build's link stub as its driver (every call answers 34,
    CUDA_ERROR_STUB_LIBRARY): the shim's cuInit returns that 34 only through the server, and
    the server logs the connection. With no server the shim answers on its own (0, then 46)."""
    driver = tmp_path / "driver"
    driver.mkdir()
    (driver / "libcuda.so.1").symlink_to(built / "link-stubs" / "libcuda.so")
    port = _free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "LUPINE_PORT": str(port), "LD_LIBRARY_PATH": str(driver)}
    with log.open("w") as sink:
        server = subprocess.Popen(
            ["stdbuf", "-oL", str(built / "server" / "lupine_driver_server")],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        while f"listening on port {port}" not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        init, count, _ = _shim_call(built / "client", f"127.0.0.1:{port}")
        assert (init, count) == (CUDA_ERROR_STUB_LIBRARY, CUDA_ERROR_STUB_LIBRARY)
        deadline = time.monotonic() + 10
        while "Client connected." not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=10)
    init, count, stderr = _shim_call(built / "client", f"127.0.0.1:{port}")
    assert (init, count) == (0, CUDA_ERROR_DEVICE_UNAVAILABLE)
    assert f"Connecting to 127.0.0.1 port {port} failed" in stderr
