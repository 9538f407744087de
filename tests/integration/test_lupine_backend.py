"""backend=lupine on a machine without a GPU: the real path (parent -> server it starts ->
worker -> result file) with stand-ins where LUPINE would be. The stand-in server listens on
LUPINE_PORT and logs as lupine_driver_server does ("Server listening on port N...",
"Client connected." per connection, no address); the stand-in shim `libcuda.so.1` connects
to LUPINE_SERVER at cuInit and reports the device the server sends it; the stand-in
application runtime (libcudart) reaches the driver by name, as a framework's runtime does,
so the dynamic linker decides which libcuda it gets. A worker that used another libcuda,
or a server whose log lacks the worker's connection, is `invalid`."""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, results_of

pytestmark = pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc to build the stand-in shim")

UUID = "ab" * 16  # the stand-in server's GPU
GPU_UUID = f"GPU-{UUID[:8]}-{UUID[8:12]}-{UUID[12:16]}-{UUID[16:20]}-{UUID[20:]}"

# lupine_driver_server's output and port (server.cpp main: LUPINE_PORT, INADDR_ANY). Each
# client gets the device line the shim reads; STAND_IN_LUPINE_SILENT: only the first
# connection (the suite's readiness check) is logged.
SERVER = r"""
import os, socket, sys, threading, time
port = int(os.environ.get("LUPINE_PORT", "14833"))
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("", port))
listener.listen(10)
print(f"Server listening on port {port}...", flush=True)
def serve(conn):
    # The greeting in two writes, as LUPINE's HTTP/2 settings: to a client that closed before
    # it came, the second write fails and the server dies as LUPINE's does of SIGPIPE.
    time.sleep(0.05)
    try:
        conn.sendall(b"Stand-in H200|")
        time.sleep(0.05)
        conn.sendall(("ab" * 16 + "\n").encode())
    except OSError:
        os._exit(141)
    while conn.recv(4096):
        pass
    conn.close()
accepted = 0
while True:
    conn, _ = listener.accept()
    accepted += 1
    if accepted == 1 or not os.environ.get("STAND_IN_LUPINE_SILENT"):
        print("Client connected.", flush=True)
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

# The client shim: cuInit connects to LUPINE_SERVER and reads the server's device. Like
# LUPINE's, it also opens this host's driver (LUPINE_REAL_LIBCUDA) unless LUPINE_DISABLE_LOCAL.
SHIM_C = r"""
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
static int fd = -1;
static char name[256];
static unsigned char uuid[16];
int cuInit(unsigned int flags) {
    char server[256], line[512], *colon, *bar;
    struct addrinfo hints = {0}, *res;
    int n = 0;
    const char *local = getenv("LUPINE_DISABLE_LOCAL");
    if (fd >= 0) return 0;
    if ((!local || !strcmp(local, "0")) && getenv("LUPINE_REAL_LIBCUDA"))
        dlopen(getenv("LUPINE_REAL_LIBCUDA"), RTLD_NOW | RTLD_LOCAL);
    if (!getenv("LUPINE_SERVER")) return 100;
    snprintf(server, sizeof server, "%s", getenv("LUPINE_SERVER"));
    if (!(colon = strchr(server, ':'))) return 100;
    *colon = 0;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(server, colon + 1, &hints, &res)) return 100;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, res->ai_addr, res->ai_addrlen)) { close(fd); fd = -1; return 100; }
    while (n < (int)sizeof line - 1 && read(fd, line + n, 1) == 1 && line[n] != '\n') n++;
    line[n] = 0;
    if (!(bar = strchr(line, '|'))) return 999;
    *bar = 0;
    snprintf(name, sizeof name, "%s", line);
    for (int i = 0; i < 16; i++) sscanf(bar + 1 + 2 * i, "%2hhx", &uuid[i]);
    return 0;
}
int cuDeviceGet(int *device, int ordinal) { if (fd < 0) return 3; *device = ordinal; return ordinal ? 101 : 0; }
int cuDeviceGetName(char *out, int length, int device) { snprintf(out, length, "%s", name); return fd < 0 ? 3 : 0; }
int cuDeviceGetUuid(void *out, int device) { memcpy(out, uuid, 16); return fd < 0 ? 3 : 0; }
int cuDevicePrimaryCtxGetState(int device, unsigned int *flags, int *active) {
    *flags = 0;
    *active = fd >= 0;
    return 0;
}
"""

# This host's own driver: a device of its own, no server.
DRIVER_C = r"""
#include <string.h>
int cuInit(unsigned int flags) { return 0; }
int cuDeviceGet(int *device, int ordinal) { *device = 0; return 0; }
int cuDeviceGetName(char *out, int length, int device) { strncpy(out, "Local GPU", length); return 0; }
int cuDeviceGetUuid(void *out, int device) { memset(out, 0xcd, 16); return 0; }
int cuDevicePrimaryCtxGetState(int device, unsigned int *flags, int *active) { *flags = 0; *active = 1; return 0; }
"""

# The application's CUDA runtime, linked against libcuda.so.1 by name (its DT_NEEDED).
CUDART_C = r"""
#include <string.h>
int cuInit(unsigned int);
int cuDeviceGetName(char *, int, int);
int cuDeviceGetUuid(void *, int);
int cudaGetDevice(int *device) { *device = 0; return cuInit(0) ? 100 : 0; }
int cudaMemGetInfo(size_t *free_bytes, size_t *total) { *total = *free_bytes = (size_t)1024 << 20; return 0; }
int cudaGetDeviceProperties(void *props, int device) {
    memset(props, 0, 272);
    return cuDeviceGetName((char *)props, 256, device) || cuDeviceGetUuid((char *)props + 256, device);
}
__attribute__((constructor)) static void start(void) { cuInit(0); }  /* a framework initializes CUDA early */
"""


def _gcc(out: Path, source: str, *args: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    c_file = out.parent / f".{out.name}.c"
    c_file.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(c_file), *args], check=True)
    return out


@pytest.fixture
def lupine(tmp_path, fake_bin):
    """A built 'layer': client/libcuda.so.1, the server program, the application's runtime
    (loaded by absolute path, reaching libcuda.so.1 by name) and this host's GPU list."""
    client = tmp_path / "lupine" / "client"
    _gcc(client / "libcuda.so.1", SHIM_C, "-Wl,-soname,libcuda.so.1", "-ldl")
    driver = _gcc(tmp_path / "driver" / "libcuda.so.1", DRIVER_C)  # no soname: linked by its path
    runtime = _gcc(tmp_path / "app" / "libcudart.so.13", CUDART_C, f"-L{client}", "-l:libcuda.so.1")
    server = tmp_path / "lupine" / "server" / "lupine_driver_server"
    server.parent.mkdir(parents=True)
    server.write_text(f"#!{sys.executable}\n{SERVER}")
    server.chmod(0o755)
    fake_bin("nvidia-smi", f"#!/bin/bash\necho 'GPU 0: Stand-in H200 (UUID: {GPU_UUID})'\n")

    class Layer:
        args = [
            "model=dummy",
            "backend=lupine",
            f"backend.client_dir={client}",
            f"backend.server_program={server}",
            f"backend.extra_env.VGPU_BENCH_DUMMY_LOAD={runtime}",
            f"backend.extra_env.LUPINE_REAL_LIBCUDA={driver}",  # a GPU host: the driver is there
            *TINY,
            "tracking=none",
        ]
        env = fake_bin.env

    Layer.client, Layer.server, Layer.runtime, Layer.bin, Layer.driver = client, server, runtime, fake_bin, driver
    return Layer


def _checks(result):
    return {c.name: c for c in result.evidence.checks}


def _server_state(results_dir):
    import json

    [state] = (results_dir / "backends" / "lupine").glob("*/server.json")
    return json.loads(state.read_text())


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_the_suite_starts_its_server_the_worker_uses_it_and_the_server_is_stopped(cli, results_dir, lupine):
    done = cli(*lupine.args, env=lupine.env)
    assert done.returncode == 0, done.stderr
    [result] = results_of(results_dir)
    checks = _checks(result)
    assert result.status == "success", result.evidence.verdict
    assert result.evidence.libraries["libcuda"] == str(lupine.client / "libcuda.so.1")
    assert result.evidence.device["name"] == "Stand-in H200" and result.evidence.device["uuid"] == GPU_UUID
    for name in ("shim_mapped", "server_connection", "server_accepted", "server_logged", "server_device"):
        assert checks[name].passed, checks[name].detail
    state = _server_state(results_dir)
    assert result.backend["env"]["LUPINE_SERVER"] == f"127.0.0.1:{state['port']}"
    assert result.backend["env"]["LUPINE_DISABLE_LOCAL"] == "1"
    assert result.backend["env"]["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(lupine.client)
    log = Path(state["log"]).read_text()
    assert f"Server listening on port {state['port']}..." in log and "Client connected." in log
    # Stopped at the end: nothing left running, nothing listening on its port.
    assert _gone(state["pid"])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", state["port"]), timeout=1):
        pass


def test_a_worker_that_loaded_this_host_s_driver_is_invalid(cli, results_dir, lupine, tmp_path):
    # The framework's runtime found a driver by absolute path, not the shim by name: it ran
    # locally, silently. No shim mapped, no connection to the server.
    driver = lupine.driver
    runtime = _gcc(tmp_path / "app-local" / "libcudart.so.13", CUDART_C, str(driver))
    args = [a for a in lupine.args if "DUMMY_LOAD" not in a] + [f"backend.extra_env.VGPU_BENCH_DUMMY_LOAD={runtime}"]
    done = cli(*args, env=lupine.env)
    assert done.returncode == 1 and "shim_mapped" in done.stderr, done.stderr
    [result] = results_of(results_dir)
    checks = _checks(result)
    assert result.status == "invalid"
    assert not checks["shim_mapped"].passed and str(driver) in checks["shim_mapped"].detail
    assert not checks["server_connection"].passed and not checks["server_logged"].passed
    assert not checks["server_device"].passed and "Local GPU" in checks["server_device"].detail
    assert _gone(_server_state(results_dir)["pid"])


def test_a_server_log_without_this_worker_s_connection_is_invalid(cli, results_dir, lupine):
    done = cli(*lupine.args, env={**lupine.env, "STAND_IN_LUPINE_SILENT": "1"})
    assert done.returncode == 1 and "server_logged" in done.stderr, done.stderr
    [result] = results_of(results_dir)
    checks = _checks(result)
    assert result.status == "invalid" and not checks["server_logged"].passed
    # The readiness check's connection, logged before the worker started, is not the worker's.
    assert (
        "0 'Client connected.' line(s)" in checks["server_logged"].detail
        and "(1 before)" in checks["server_logged"].detail
    )
    assert checks["shim_mapped"].passed and checks["server_connection"].passed  # the log alone decided


def test_a_device_that_is_not_among_the_server_s_gpus_is_invalid(cli, results_dir, lupine):
    lupine.bin(
        "nvidia-smi", "#!/bin/bash\necho 'GPU 0: Stand-in H200 (UUID: GPU-00000000-1111-2222-3333-444444444444)'\n"
    )
    done = cli(*lupine.args, env=lupine.env)
    assert done.returncode == 1 and "server_device" in done.stderr, done.stderr
    [result] = results_of(results_dir)
    assert result.status == "invalid" and not _checks(result)["server_device"].passed


@contextlib.contextmanager
def _own_server(program: Path):
    """A stand-in server the user started (another machine's): its port."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(program)], env={**os.environ, "LUPINE_PORT": str(port)}, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout.readline().startswith("Server listening")
        _own_server.process = server
        yield port
    finally:
        server.kill()
        server.wait()


def test_a_server_the_user_names_is_used_as_it_is(cli, results_dir, lupine):
    with _own_server(lupine.server) as port:
        done = cli(*lupine.args, f"backend.server=127.0.0.1:{port}", env=lupine.env)
        assert done.returncode == 0, done.stderr
        assert _own_server.process.poll() is None  # the reachability check did not kill it
    [result] = results_of(results_dir)
    checks = _checks(result)
    assert result.status == "success" and checks["server_connection"].passed
    assert "server_logged" not in checks  # another machine's log is not the suite's to read
    assert not (results_dir / "backends" / "lupine").exists()  # no server of its own


def test_a_worker_that_reached_another_server_than_the_suite_s_is_invalid(cli, results_dir, lupine):
    with _own_server(lupine.server) as port:
        done = cli(*lupine.args, f"backend.extra_env.LUPINE_SERVER=127.0.0.1:{port}", env=lupine.env)
    assert done.returncode == 1, done.stderr
    [result] = results_of(results_dir)
    checks = _checks(result)
    assert result.status == "invalid" and checks["server_connection"].passed  # connected, to the other one
    assert not checks["server_accepted"].passed and "holds the other end of 0 of" in checks["server_accepted"].detail
    assert not checks["server_logged"].passed


def test_the_local_driver_opened_beside_the_shim_is_invalid(cli, results_dir, lupine):
    # LUPINE's shim opens this host's driver too unless LUPINE_DISABLE_LOCAL: its GPUs come
    # first, and device 0 is local. The suite sets it; a user who unsets it gets `invalid`.
    done = cli(*lupine.args, "backend.extra_env.LUPINE_DISABLE_LOCAL=0", env=lupine.env)
    assert done.returncode == 1 and "shim_mapped" in done.stderr, done.stderr
    [result] = results_of(results_dir)
    assert result.status == "invalid" and str(lupine.driver) in _checks(result)["shim_mapped"].detail


def test_an_unreachable_server_fails_in_one_line_before_any_work(cli, results_dir, lupine):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed when the block ends: nothing listens there
    done = cli(*lupine.args, f"backend.server=127.0.0.1:{port}", env=lupine.env)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert re.fullmatch(
        rf"error: backend 'lupine': the LUPINE server 127\.0\.0\.1:{port} is unreachable \(Connection refused\); "
        rf"start `LUPINE_PORT={port} lupine_driver_server` there, or leave backend\.server unset and the suite "
        r"starts one here",
        line,
    ), line
    assert results_of(results_dir) == []


def test_a_server_that_does_not_start_fails_in_one_line_and_a_missing_one_names_the_build(cli, results_dir, lupine):
    lupine.server.write_text("#!/bin/bash\necho 'Socket bind failed.'\nexit 1\n")
    done = cli(*lupine.args, env=lupine.env)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "the LUPINE server exited with code 1 before it listened on port" in done.stderr
    assert "its log: Socket bind failed." in done.stderr and results_of(results_dir) == []
    lupine.server.unlink()
    done = cli(*lupine.args, env=lupine.env)
    assert done.returncode != 0 and "make remoting-layer SRC=<LUPINE source folder>" in done.stderr


def test_dry_run_shows_the_environment_and_the_server_command(cli, results_dir, lupine):
    done = cli(*lupine.args, "dry_run=true", env=lupine.env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "preflight: ok" in out and f"LD_LIBRARY_PATH={lupine.client}" in out
    assert f"TRITON_LIBCUDA_PATH={lupine.client}\n" in out
    port = re.search(r"LUPINE_SERVER=127\.0\.0\.1:(\d+)\n", out)[1]  # chosen free: the server's port
    assert "LUPINE_DISABLE_LOCAL=1" in out and f"VGPU_BENCH_LUPINE_STATE={results_dir}/backends/lupine/" in out
    server = re.escape(str(lupine.server))
    assert re.search(rf"daemon start: LUPINE_PORT={port} (\S*stdbuf -oL -eL )?{server} > \S+/server\.log\n", out)
    assert not (results_dir / "runs").exists() and not (results_dir / "backends").exists()


# -- gpu-check's LUPINE items ----------------------------------------------------------------

H200_RUNS = Path(__file__).resolve().parents[2] / "results/reference/nvidia-h200/gpu-check-as-landed"
ENGAGED = ("shim_mapped", "server_connection", "server_accepted", "server_logged", "server_device")


def _write(work: Path, plain: dict, run_id: str) -> None:
    import json

    folder = work / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({**plain, "run_id": run_id}))


def _as_lupine(plain: dict, slower: float, missing: str = "") -> dict:
    """A native run made into a LUPINE one: its evidence checks, `slower` times the latency."""
    import copy

    plain = copy.deepcopy(plain)
    plain["backend"]["name"] = "lupine"
    plain["evidence"]["checks"] += [{"name": n, "passed": True, "detail": "seen"} for n in ENGAGED if n != missing]
    for key in ("latency_ms_mean",):
        plain["metrics"][key]["value"] *= slower
    plain["metrics"]["throughput"]["value"] /= slower
    return plain


def test_gpu_check_s_lupine_items_are_beyond_the_plan_skipped_without_a_build_and_run_by_name(tmp_path):
    from runners.cli import gpu_check
    from runners.config import GpuCheckConfig
    from runners.errors import UsageError
    from runners.parent.gpu_paths import PLAN_LIMIT_S, items, optional_items

    optional = optional_items(tmp_path)
    names = [i.name for i in optional]
    assert names == ["lupine_bert", "lupine_parity", "lupine_microbench", "lupine_profile"]
    assert not set(names) & {i.name for i in items(1)} and sum(i.budget_s for i in optional) <= PLAN_LIMIT_S
    assert all("make remoting-layer SRC=<LUPINE source folder>" in i.skip_reason() for i in optional)
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "libcuda.so.1").write_bytes(b"\x7fELF")
    assert "lupine_driver_server missing" in optional[0].skip_reason()  # half a build is none
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "lupine_driver_server").write_bytes(b"\x7fELF")
    assert [i.skip_reason() for i in optional] == [""] * 4
    lupine_commands = [c for i in optional for c in i.commands if "backend=lupine" in " ".join(c)]
    assert len(lupine_commands) == 4 and all(
        f"backend.client_dir={tmp_path / 'client'}" in " ".join(c) for c in lupine_commands
    )
    plan = items(1)
    assert gpu_check.select(plan, GpuCheckConfig(), optional) == plan  # the 8-minute plan as it was
    assert gpu_check.select(plan, GpuCheckConfig(only=["lupine_bert"]), optional) == optional[:1]
    with pytest.raises(UsageError, match="Valid: .*lupine_profile"):
        gpu_check.select(plan, GpuCheckConfig(only=["lupine"]), optional)


def test_gpu_check_s_lupine_bert_check_needs_both_sides_and_the_layer_engaged(tmp_path):
    import json

    from runners.parent.gpu_paths import Missing, optional_items

    check = {i.name: i.check for i in optional_items(tmp_path)}["lupine_bert"]
    native = {
        p: json.loads(next(H200_RUNS.glob(f"native/runs/*-{run}/result.json")).read_text())
        for p, run in (("fp32", "7b41c8"), ("bf16", "1a695d"))
    }
    for precision, plain in native.items():
        _write(tmp_path / "good", plain, f"native-{precision}")
        _write(tmp_path / "good", _as_lupine(plain, 1.5), f"lupine-{precision}")
    assert "fp32: native 1623/s, lupine 1082/s, latency x1.50" in check(tmp_path / "good", "")
    _write(tmp_path / "unlogged", native["fp32"], "native-fp32")
    _write(tmp_path / "unlogged", _as_lupine(native["fp32"], 1.5, missing="server_logged"), "lupine-fp32")
    _write(tmp_path / "unlogged", native["bf16"], "native-bf16")
    _write(tmp_path / "unlogged", _as_lupine(native["bf16"], 1.5), "lupine-bf16")
    with pytest.raises(Missing, match="no server_logged check"):
        check(tmp_path / "unlogged", "")
    for precision, plain in native.items():  # LUPINE never ran: native twice
        _write(tmp_path / "native-only", plain, f"native-{precision}")
        _write(tmp_path / "native-only", plain, f"again-{precision}")
    with pytest.raises(Missing, match="not native and lupine"):
        check(tmp_path / "native-only", "")


# -- the real LUPINE, where a build is at hand ---------------------------------------------------


def _real_build() -> Path | None:
    """A LUPINE build (`make remoting-layer`): VGPU_BENCH_LUPINE_BUILD, else the checkout's."""
    build = Path(os.environ.get("VGPU_BENCH_LUPINE_BUILD") or Path(__file__).resolve().parents[2] / "build/lupine")
    needed = ("client/libcuda.so.1", "server/lupine_driver_server", "link-stubs/libcuda.so")
    return build if all((build / p).is_file() for p in needed) else None


def _listening(server: subprocess.Popen, port: int) -> None:
    """Wait until `server` holds a listening socket on `port` (its printf to a pipe is block-buffered)."""
    import time

    from runners.backends.lupine import socket_inodes, tcp_sockets

    for _ in range(200):
        own = socket_inodes(server.pid)
        if any(s["state"] == "0A" and s["local"][1] == port and s["inode"] in own for s in tcp_sockets(server.pid)):
            return
        assert server.poll() is None, f"the server exited with {server.returncode}"
        time.sleep(0.05)
    raise AssertionError(f"the server did not listen on port {port} within 10 s")


@pytest.mark.skipif(
    _real_build() is None, reason="no LUPINE build (make remoting-layer SRC=...; VGPU_BENCH_LUPINE_BUILD)"
)
def test_the_real_shim_and_server_carry_a_run_and_the_checks_leave_the_server_alive(cli, results_dir, lupine, tmp_path):
    # The real server on this CPU machine runs on the build's stub driver (every cu* answers
    # CUDA_ERROR_STUB_LIBRARY): the RPCs are real, the device is not, so the device checks
    # have nothing to compare and the transport's evidence decides.
    build = _real_build()
    stubs = tmp_path / "stub-driver"
    stubs.mkdir()
    (stubs / "libcuda.so.1").symlink_to(build / "link-stubs" / "libcuda.so")
    env = {**lupine.env, "LD_LIBRARY_PATH": str(stubs)}  # the server's driver; the worker's is after the shim
    real = [a for a in lupine.args if "client_dir" not in a and "server_program" not in a]
    real += [
        f"backend.client_dir={build / 'client'}",
        f"backend.server_program={build / 'server/lupine_driver_server'}",
    ]
    done = cli(*real, "label=own", env=env)
    assert done.returncode == 0, done.stderr
    [own] = results_of(results_dir)
    checks = _checks(own)
    assert own.status == "success" and own.backend["version"].startswith("LUPINE ")
    assert all(checks[n].passed for n in ("shim_mapped", "server_connection", "server_accepted", "server_logged"))
    assert own.evidence.libraries["libcuda"] == str(build / "client" / "libcuda.so.1")
    assert _gone(_server_state(results_dir)["pid"])
    # A server the user started, SIGPIPE as it comes: LUPINE's server dies of it when a client
    # closes before it wrote its greeting (exit 141); the suite's check must not be that client.
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    program = build / "server" / "lupine_driver_server"
    server = subprocess.Popen([str(program)], env={**os.environ, **env, "LUPINE_PORT": str(port)})
    try:
        _listening(server, port)
        done = cli(*real, "label=named", f"backend.server=127.0.0.1:{port}", env=env)
        assert done.returncode == 0, done.stderr
        assert server.poll() is None  # alive after the suite's check and the worker's exit
    finally:
        server.kill()
        server.wait()


def test_a_server_that_does_not_start_under_ab_is_one_line_too(results_dir, lupine):
    from conftest import run_command

    lupine.server.write_text("#!/bin/bash\necho 'Socket bind failed.'\nexit 1\n")
    side = f"backend=lupine backend.client_dir={lupine.client} backend.server_program={lupine.server}"
    done = run_command(
        results_dir, "ab", "model=dummy", "backend=cpu", *TINY, f"candidate={side}", "repeats=2", env=lupine.env
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]  # the baseline ran first
    assert len(errors) == 1 and errors[0].startswith("error: the LUPINE server exited with code 1 before it listened")


def test_a_server_that_does_not_start_under_a_diagnostic_is_one_line_too(results_dir, lupine):
    from conftest import run_command

    lupine.server.write_text("#!/bin/bash\necho 'Socket bind failed.'\nexit 1\n")
    side = [f"backend.client_dir={lupine.client}", f"backend.server_program={lupine.server}"]
    done = run_command(results_dir, "diagnose", "diagnostic=microbench", "backend=lupine", *side, env=lupine.env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: the LUPINE server exited with code 1 before it listened")
