"""The server loop of `workload=serve`, in the worker: requests from every load generator
into one queue, run in dynamic batches as Triton's dynamic batcher does: a batch starts
when serve.max_batch_size requests wait, or when the oldest has waited
serve.max_queue_delay_ms; requests beyond serve.max_queue are rejected at once. Each batch
is answered in one packet per generator (runners/serving/wire.py)."""

from __future__ import annotations

import select
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from runners.serving import wire

DONTWAIT = socket.MSG_DONTWAIT


@dataclass
class Batches:
    sizes: list[int] = field(default_factory=list)
    started: list[float] = field(default_factory=list)  # CLOCK_MONOTONIC
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the first few batches' exceptions
    failed: int = 0  # batches whose run raised: their requests are answered as errors
    rejected: int = 0
    token_times: list[tuple[int, list[float]]] = field(default_factory=list)  # decoders: (batch size, token times)


def serve(
    socks: list[socket.socket],
    run_batch: Callable[[int], Optional[list[float]]],
    max_batch_size: int,
    max_queue_delay_s: float,
    max_queue: int,
    poll_s: float = 0.0,
) -> Batches:
    """Serve until every generator said STOP. Requests still queued then were given up by
    their generator (counted failed there)."""
    now, pack = wire.now, wire.RESPONSE.pack
    queue: deque = deque()  # (request id, received, socket)
    open_socks = list(socks)
    batches = Batches()
    while open_socks:
        if not queue:
            timeout = 1.0
        elif len(queue) >= max_batch_size:
            timeout = 0.0
        else:
            timeout = max(0.0, queue[0][1] + max_queue_delay_s - now())
        readable = _poll(open_socks, poll_s) if not queue and poll_s else []
        readable = readable or select.select(open_socks, [], [], timeout)[0]
        for sock in readable:
            rejected = []
            while True:
                try:
                    packet = sock.recv(64, DONTWAIT)
                except BlockingIOError:
                    break
                if not packet:  # the generator's process ended without STOP
                    open_socks.remove(sock)
                    break
                (rid,) = wire.REQUEST.unpack(packet)
                if rid == wire.STOP:  # its generator is done: nothing queued of it is awaited
                    open_socks.remove(sock)
                    queue = deque(q for q in queue if q[2] is not sock)
                    break
                t = now()
                if len(queue) >= max_queue:
                    rejected.append(pack(rid, wire.REJECTED, t, t, t, t))
                else:
                    queue.append((rid, t, sock))
            if rejected:
                batches.rejected += len(rejected)
                _answer(sock, rejected, open_socks)
        if not queue or (len(queue) < max_batch_size and now() < queue[0][1] + max_queue_delay_s):
            continue
        batch = [queue.popleft() for _ in range(min(max_batch_size, len(queue)))]
        status, began, tokens = wire.OK, now(), None
        try:
            tokens = run_batch(len(batch))  # decoders: the time of each token; None: a forward pass
        except Exception as exc:  # noqa: BLE001  (a failed batch fails its requests, not the server)
            status = wire.ERROR
            batches.failed += 1
            if len(batches.errors) < 5:
                batches.errors.append(f"{type(exc).__name__}: {exc}")
        done = now()
        first = tokens[0] if tokens else done
        if tokens:
            batches.token_times.append((len(batch), tokens))
        batches.sizes.append(len(batch))
        batches.started.append(began)
        batches.seconds.append(done - began)
        answers: dict[socket.socket, list[bytes]] = {}
        for rid, received, sock in batch:
            answers.setdefault(sock, []).append(pack(rid, status, received, began, first, done))
        for sock, records in answers.items():
            if sock in open_socks:
                _answer(sock, records, open_socks)
    return batches


def _poll(socks: list[socket.socket], seconds: float) -> list[socket.socket]:
    """Idle: look for a request without sleeping, for up to `seconds` (a sleeping process
    wakes tens of microseconds after its packet arrives)."""
    end = wire.now() + seconds
    while wire.now() < end:
        readable = select.select(socks, [], [], 0)[0]
        if readable:
            return readable
    return []


def _answer(sock: socket.socket, records: list[bytes], open_socks: list) -> None:
    """A generator that gave up (its drain time passed) may be gone before its STOP is read:
    its unanswered requests are counted failed there; the server goes on with the others."""
    try:
        sock.sendall(b"".join(records))
    except (BrokenPipeError, ConnectionResetError):
        if sock in open_socks:
            open_socks.remove(sock)
