"""The local transport between the load generator and the server: a Unix SOCK_SEQPACKET
socket pair per generator (message boundaries kept by the kernel, no framing in Python, a
few microseconds a message). A request is its id only: the server takes its inputs from
host memory, as `workload=infer` does, so the socket carries no tensor bytes. The server
answers a batch in one packet of fixed-size records.

Every timestamp is CLOCK_MONOTONIC (`now`), one clock for every process of the machine,
so the generator's and the server's timestamps subtract directly."""

from __future__ import annotations

import socket
import struct
import time

now = time.monotonic  # CLOCK_MONOTONIC on Linux: shared by every process of the machine

REQUEST = struct.Struct("<i")  # request id, or a control code below
READY, STOP = -2, -1  # generator -> server: schedule built / all requests done or given up
START = struct.Struct("<d")  # server -> generator: the schedule's time zero (CLOCK_MONOTONIC)
# server -> generator, one per request of a batch: id, status, received, batch started, first output, done
RESPONSE = struct.Struct("<iBdddd")
OK, REJECTED, ERROR = 0, 1, 2  # REJECTED: the server's queue was full (serve.max_queue)
BUFFER_BYTES = 4 * 2**20


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """(the server's end, the generator's end)."""
    server, generator = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in (server, generator):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER_BYTES)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER_BYTES)
    return server, generator
