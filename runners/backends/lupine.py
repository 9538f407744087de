"""LUPINE (formerly SCUDA, github kevmo314/scuda): API remoting of the CUDA driver. The
worker holds only client shims (`libcuda.so.1`, `libnvidia-ml.so.1`, first on
LD_LIBRARY_PATH) that forward every driver call over TCP to `lupine_driver_server` on the
GPU host, named by LUPINE_SERVER=host:port.

The suite starts a server of its own on this host (a free port in LUPINE_PORT, its output
stamped line by line into a log under results/backends/lupine/, checked ready by a
connection its own listening socket accepts, always stopped), or uses one the user names
with backend.server=host:port, which is only checked reachable (a short TCP connect: an
unreachable server is one line before any work, not a hang).

By default the shim also drives the GPUs of the local driver, listed before the remote
ones: device 0 would be this host's GPU through the local driver, silently. The worker gets
LUPINE_DISABLE_LOCAL=1, and its evidence is read in the worker at run time: every libcuda
mapped is the shim's, the worker holds a TCP connection to the server (and, for the suite's
own server, that server holds its other end and logged a connection after the worker
started), the device it ran on is one of the server host's GPUs where they can be listed."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Optional

from runners import REPO_ROOT
from runners.backends import Backend, Check, UsageError, backends, instance_name, prepend_path
from runners.backends.local import device_used, same_device
from runners.config import BackendConfig, _check

PROGRAM = "lupine_driver_server"
BUILD = "make remoting-layer SRC=<LUPINE source folder>"
STATE_VARIABLE = "VGPU_BENCH_LUPINE_STATE"  # the worker's path to the suite's server.json
CONNECTED = "Client connected."  # what server.cpp prints per accepted connection (no address)
STOP_WAIT_S = 5.0
LOG_LINES = 5  # of the server's log in the error when it does not start
_GPU_LINE = re.compile(r"^GPU (\d+): (.+?) \(UUID: ([^)]+)\)")
_LISTEN, _ESTABLISHED = "0A", "01"  # /proc/net/tcp states


@dataclass
class LupineConfig(BackendConfig):
    client_dir: str = "build/lupine/client"  # the shims libcuda.so.1 and libnvidia-ml.so.1 (relative: the checkout)
    server: Optional[str] = None  # host:port of a running server (another machine); None: the suite starts one
    server_program: str = f"build/lupine/server/{PROGRAM}"  # what the suite starts when backend.server is unset
    connect_timeout_s: float = 3.0  # the reachability check's TCP connect
    start_timeout_s: float = 60.0  # until the suite's server accepts a connection

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            self.server is None
            or (
                re.fullmatch(r"[\w.\-]+:\d{1,5}", self.server) is not None
                and 1 <= split_server(self.server)[1] <= 65535
            ),
            f"backend.server must be host:port (an IPv4 address or a name, a port in 1..65535), got {self.server!r}",
        )
        _check(self.connect_timeout_s > 0, f"backend.connect_timeout_s must be > 0, got {self.connect_timeout_s}")
        _check(self.start_timeout_s > 0, f"backend.start_timeout_s must be > 0, got {self.start_timeout_s}")


def _in_checkout(path: str) -> Path:
    return Path(path) if os.path.isabs(path) else REPO_ROOT / path


def _address(hex_address: str) -> tuple[str, int]:
    ip, port = hex_address.split(":")
    return socket.inet_ntoa(int(ip, 16).to_bytes(4, "little")), int(port, 16)


def tcp_sockets(pid: Any = "self") -> list[dict[str, Any]]:
    """The IPv4 TCP sockets of `pid`'s network namespace (LUPINE's client and server use
    AF_INET only): local and remote (ip, port), state, inode."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            found.append(
                {
                    "local": _address(fields[1]),
                    "remote": _address(fields[2]),
                    "state": fields[3],
                    "inode": int(fields[9]),
                }
            )
    return found


def socket_inodes(pid: Any = "self") -> set[int]:
    """The inodes of the sockets process `pid` holds open."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def split_server(server: str) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    return host, int(port)


def reachable(host: str, port: int, timeout_s: float) -> Optional[str]:
    """None when a TCP connection to host:port opens within timeout_s, else why not.

    Closed politely: lupine_driver_server writes its HTTP/2 settings to each new client and
    dies of SIGPIPE (exit 141, seen with the 47e1b43 build) when that client has already
    closed. So the check reads what the server sends first, closes its own side only, and
    waits for the server to close: a check must never kill the server it checks."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            with contextlib.suppress(OSError):
                connection.recv(4096)  # the server's greeting, or nothing within timeout_s
                connection.shutdown(socket.SHUT_WR)
                while connection.recv(4096):  # until the server closes (it reads end of file)
                    pass
            return None
    except socket.timeout:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def server_gpus() -> tuple[list[dict[str, str]], str]:
    """The GPUs of this host, the suite's server's (`nvidia-smi -L`), and where they come from."""
    if not shutil.which("nvidia-smi"):
        return [], "nvidia-smi is not on PATH"
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi -L failed: {exc}"
    gpus = [{"name": m[2], "uuid": m[3]} for m in map(_GPU_LINE.match, listing.splitlines()) if m]
    return gpus, "nvidia-smi -L" if gpus else "nvidia-smi -L lists no GPU"


class _Server:
    """The suite's own lupine_driver_server: started, checked ready, always stopped."""

    def __init__(self, command: list[str], port: int, folder: Path):
        self.command, self.port, self.folder = command, port, folder
        self.log = folder / "server.log"
        self.state = folder / "server.json"
        self.proc: Optional[subprocess.Popen] = None
        self._pump: Optional[threading.Thread] = None

    def _stamp(self, stream: IO[bytes], log: IO[str]) -> None:
        # Each line with the time it was read: LUPINE's log names no client, and the worker
        # tells its own connection from earlier ones by when it was logged.
        for raw in iter(stream.readline, b""):
            log.write(f"{time.time():.6f} {raw.decode(errors='replace').rstrip()}\n")
            log.flush()
        log.close()

    def start(self, timeout_s: float, connect_timeout_s: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "LUPINE_PORT": str(self.port)}
        self.proc = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            # SIGPIPE stays ignored (as Python has it) across exec: the server writes to clients
            # that may be gone (a worker killed at its timeout), and by default that kills it
            # for every tenant; ignored, the write fails and the server closes that client only.
            restore_signals=False,
        )
        # Appended: a command that starts the server again (make ab, per repeat) keeps every start.
        self._pump = threading.Thread(
            target=self._stamp, args=(self.proc.stdout, open(self.log, "a")), name="lupine-log", daemon=True
        )
        self._pump.start()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                self._pump.join(timeout=STOP_WAIT_S)
                raise UsageError(
                    f"the LUPINE server exited with code {self.proc.returncode} before it listened on port "
                    f"{self.port}; its log: {self.tail() or 'empty'}; see {self.log}"
                )
            if self.listening() and reachable("127.0.0.1", self.port, connect_timeout_s) is None:
                break
            if time.monotonic() > deadline:
                raise UsageError(
                    f"the LUPINE server did not accept a connection on port {self.port} within {timeout_s:g} s "
                    f"(backend.start_timeout_s); its log: {self.tail() or 'empty'}; see {self.log}"
                )
            time.sleep(0.05)
        gpus, source = server_gpus()
        self.state.write_text(
            json.dumps(
                {"pid": self.proc.pid, "port": self.port, "log": str(self.log), "gpus": gpus, "gpus_from": source}
            )
        )

    def listening(self) -> bool:
        """The port's listening socket is this server's own (not another process's on a reused port)."""
        own = socket_inodes(self.proc.pid)
        return any(
            s["state"] == _LISTEN and s["local"][1] == self.port and s["inode"] in own
            for s in tcp_sockets(self.proc.pid)
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, STOP_WAIT_S), (signal.SIGKILL, STOP_WAIT_S)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._pump:
            self._pump.join(timeout=STOP_WAIT_S)

    def tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(line.split(" ", 1)[-1].strip() for line in lines[-LOG_LINES:] if line.strip())[:600]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))  # the server binds INADDR_ANY: free on every interface
        return probe.getsockname()[1]


@backends.register
class LupineBackend(Backend):
    name = "lupine"
    device = "cuda"
    summary = "LUPINE API remoting of the CUDA driver (client shim, GPU server over TCP)"
    config_class = LupineConfig

    def __init__(self, config, state_dir, requested=None):
        super().__init__(config, state_dir, requested)
        self.instance = instance_name(secrets.token_hex(3))
        self._server: Optional[_Server] = None  # the suite's own, while session() runs
        self._port: Optional[int] = None

    @property
    def port(self) -> int:
        """The suite's server's port: chosen free once, when first asked, so that every
        environment this backend hands out (a worker's, a pre-started process's) names the
        port the server is started on."""
        if self._port is None:
            self._port = free_port()
        return self._port

    @property
    def client_dir(self) -> Path:
        return _in_checkout(self.config.client_dir)

    @property
    def program(self) -> Path:
        return _in_checkout(self.config.server_program)

    def preflight(self):
        if not (self.client_dir / "libcuda.so.1").is_file():
            raise UsageError(
                f"backend 'lupine' needs LUPINE's client shim, but {self.client_dir} holds no libcuda.so.1; "
                f"build it with `{BUILD}` or point to it with backend.client_dir=<dir>"
            )
        if self.config.server:
            host, port = split_server(self.config.server)
            why = reachable(host, port, self.config.connect_timeout_s)
            if why:
                raise UsageError(
                    f"backend 'lupine': the LUPINE server {self.config.server} is unreachable ({why}); start "
                    f"`LUPINE_PORT={port} {PROGRAM}` there, or leave backend.server unset and the suite starts one here"
                )
        elif not os.access(self.program, os.X_OK):
            raise UsageError(
                f"backend 'lupine' starts LUPINE's server {self.program}, and it is not there (or not executable); "
                f"build it with `{BUILD}`, set backend.server_program=<path>, or name a running one with "
                f"backend.server=host:port"
            )

    def _command(self) -> list[str]:
        # printf to a pipe is block-buffered: without stdbuf the "Client connected." lines
        # reach the log only when the server exits.
        stdbuf = shutil.which("stdbuf")
        return [*([stdbuf, "-oL", "-eL"] if stdbuf else []), str(self.program)]

    def _folder(self) -> Path:
        return self.state_dir / self.instance

    def environment(self):
        server = self.config.server or f"127.0.0.1:{self.port}"
        env = {
            "LD_LIBRARY_PATH": prepend_path("LD_LIBRARY_PATH", str(self.client_dir)),
            "LUPINE_SERVER": server,
            "LUPINE_DISABLE_LOCAL": "1",  # else the local driver's GPUs come first, as device 0
            # Triton (torch.compile) links its launchers against the libcuda that `ldconfig -p`
            # finds, the driver's, unless this names another folder.
            "TRITON_LIBCUDA_PATH": str(self.client_dir),
        }
        if not self.config.server:
            env[STATE_VARIABLE] = str(self._folder() / "server.json")
        return {**env, **super().environment()}

    def daemon_commands(self):
        if self.config.server:
            return {"check": [f"a TCP connection to {self.config.server} within {self.config.connect_timeout_s:g} s"]}
        return {
            "start": [f"LUPINE_PORT={self.port} {' '.join(self._command())} > {self._folder() / 'server.log'}"],
            "stop": ["SIGTERM to the server's process group (SIGKILL after 5 s)"],
        }

    @contextlib.contextmanager
    def session(self):
        if self.config.server:
            yield
            return
        server = _Server(self._command(), self.port, self._folder())
        try:
            server.start(self.config.start_timeout_s, self.config.connect_timeout_s)
            self._server = server
            yield
        finally:
            self._server = None
            server.stop()

    def engagement(self, seen):
        state = _state(seen.env.get(STATE_VARIABLE))
        target = seen.env.get("LUPINE_SERVER", "")
        checks = [*super().engagement(seen), self._shim_mapped(seen)]
        connections, connection = _connection(target)
        checks += [connection, device_used(seen)]
        if state is not None:  # the suite's own server: its side of the connection, its log
            checks += [
                _server_side(state, connections),
                _logged(state, _started_at(seen)),
                _device_is_servers(seen, state),
            ]
        return checks

    def _shim_mapped(self, seen) -> Check:
        client = os.path.realpath(self.client_dir)
        drivers = seen.mapped_like("libcuda.so")
        shims = [p for p in drivers if os.path.realpath(p).startswith(client + os.sep)]
        others = [p for p in drivers if p not in shims]
        if shims and not others:
            return Check("shim_mapped", True, f"libcuda mapped from the client: {', '.join(shims)}")
        return Check(
            "shim_mapped", False, f"libcuda mapped from {', '.join(others) or 'nowhere'}, not (only) from {client}"
        )

    def version(self):
        info = self.client_dir.parent / "BUILD_INFO"
        with contextlib.suppress(OSError):
            pairs = dict(line.split("=", 1) for line in info.read_text().splitlines() if "=" in line)
            commit, cuda = pairs.get("source_commit", "")[:12], pairs.get("cuda_version", "")
            return f"LUPINE {commit or 'unknown commit'}" + (f" for CUDA {cuda}" if cuda else "")
        return None


def _state(path: Optional[str]) -> Optional[dict[str, Any]]:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        return {"error": f"{path}: {exc}"}


def _started_at(seen) -> float:
    """When the parent started this worker (the job's spawned_at)."""
    from runners.contracts import JOB_FILE

    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        spawned = float(json.loads((Path(seen.run_dir) / JOB_FILE).read_text())["spawned_at"])
        if spawned > 0:
            return spawned
    return time.time()  # unknown (or unset, 0): no earlier line may count


def _connection(target: str) -> tuple[list[dict[str, Any]], Check]:
    """The worker's own established TCP connections to the LUPINE server."""
    try:
        host, port = split_server(target)
        address = (socket.gethostbyname(host), port)
    except (ValueError, OSError) as exc:
        return [], Check("server_connection", False, f"LUPINE_SERVER={target!r} is not a reachable host:port ({exc})")
    own = socket_inodes()
    mine = [s for s in tcp_sockets() if s["inode"] in own and s["state"] == _ESTABLISHED and s["remote"] == address]
    if not mine:
        return [], Check(
            "server_connection", False, f"this worker holds no TCP connection to {address[0]}:{port} (LUPINE_SERVER)"
        )
    ports = ", ".join(str(s["local"][1]) for s in mine)
    return mine, Check(
        "server_connection", True, f"{len(mine)} connection(s) to {address[0]}:{port} from port(s) {ports}"
    )


def _server_side(state: dict[str, Any], connections: list[dict[str, Any]]) -> Check:
    if "error" in state:
        return Check("server_accepted", False, f"the suite's server state is unreadable: {state['error']}")
    pid, own = state["pid"], socket_inodes(state["pid"])
    if not own:
        return Check("server_accepted", False, f"the suite's LUPINE server (pid {pid}) is gone or holds no socket")
    ends = {(s["local"], s["remote"]) for s in tcp_sockets(pid) if s["inode"] in own}
    peered = [c for c in connections if (c["remote"], c["local"]) in ends]
    detail = (
        f"the server (pid {pid}) holds the other end of {len(peered)} of the worker's {len(connections)} connections"
    )
    return Check("server_accepted", bool(peered), detail)


def _logged(state: dict[str, Any], since: float) -> Check:
    if "error" in state:
        return Check("server_logged", False, f"the suite's server state is unreadable: {state['error']}")
    try:
        lines = Path(state["log"]).read_text(errors="replace").splitlines()
    except OSError as exc:
        return Check("server_logged", False, f"the server's log cannot be read: {exc}")
    stamps = []
    for line in lines:
        stamp, _, text = line.partition(" ")
        with contextlib.suppress(ValueError):
            if text.strip() == CONNECTED and float(stamp) >= since:
                stamps.append(float(stamp))
    return Check(
        "server_logged",
        bool(stamps),
        f"{len(stamps)} '{CONNECTED}' line(s) in {state['log']} since this worker started"
        + ("" if stamps else f" ({sum(CONNECTED in line for line in lines)} before)"),
    )


def _device_is_servers(seen, state: dict[str, Any]) -> Check:
    gpus = state.get("gpus") or []
    if not seen.device or not (seen.device.get("uuid") or seen.device.get("name")):
        return Check("server_device", not seen.framework_loaded, "no device was seen to compare with the server's")
    uuid, name = seen.device.get("uuid") or "", seen.device.get("name") or ""
    if not gpus:
        return Check(
            "server_device", True, f"{name} ({uuid}); the server's GPUs are not listed here ({state.get('gpus_from')})"
        )
    match = [g for g in gpus if (uuid and same_device(uuid, g["uuid"])) or (not uuid and g["name"] == name)]
    listed = ", ".join(f"{g['name']} ({g['uuid']})" for g in gpus)
    return Check("server_device", bool(match), f"{name} ({uuid}) against the server's GPUs: {listed}")
