"""One load generator: an open loop over its share of the arrival schedule, receiving
answers while it waits for the next send time. It sleeps in select() until SPIN_S before
a send, then polls: select alone overshoots by tens of microseconds. Under
serve.concurrency a due request waits for a slot; its latency still counts from its
scheduled time (held=True keeps it out of the generator-behind figure)."""

from __future__ import annotations

import json
import math
import select
import socket
from dataclasses import dataclass
from typing import Optional

from runners.serving import schedule, wire
from runners.serving.slo import ERROR, OK, REJECTED, Request

SPIN_S = 200e-6
STATUS = {wire.OK: OK, wire.REJECTED: REJECTED, wire.ERROR: ERROR}
DONTWAIT = socket.MSG_DONTWAIT


@dataclass
class Spec:
    rate: Optional[float]  # None: closed loop, a new request as soon as a slot is free
    duration_s: float
    seed: int
    burstiness: float = 1.0
    stream: int = 0  # the tenant's own arrival stream
    generators: int = 1
    index: int = 0
    concurrency: Optional[int] = None
    drain_s: float = 5.0
    min_requests: int = 0  # the schedule goes on past duration_s until it has this many (all generators)


def run(sock: socket.socket, spec: Spec) -> list[Request]:
    mine = None
    if spec.rate is not None:
        times = schedule.arrivals(
            spec.rate, spec.duration_s, spec.seed, spec.burstiness, spec.stream, spec.min_requests
        )
        mine = schedule.share(times, spec.generators, spec.index)
    sock.send(wire.REQUEST.pack(wire.READY))
    (t0,) = wire.START.unpack(sock.recv(64))
    requests: dict[int, Request] = {}
    limit = spec.concurrency or math.inf
    now, recv, unpack = wire.now, sock.recv, wire.RESPONSE.iter_unpack
    outstanding, i, held = 0, 0, False
    end = t0 + (mine[-1][1] if mine else spec.duration_s)  # an extended schedule ends at its last arrival
    end = max(end, t0 + spec.duration_s)
    own_minimum = -(-spec.min_requests // spec.generators)  # closed loop: this generator's share
    deadline = None

    def drain() -> None:
        nonlocal outstanding
        while True:
            try:
                packet = recv(1 << 20, DONTWAIT)
            except BlockingIOError:
                return
            t = now() - t0
            for rid, status, received, started, first, done in unpack(packet):
                r = requests[rid]
                r.status, r.completed = STATUS[status], t
                r.received, r.started, r.first, r.done = received - t0, started - t0, first - t0, done - t0
                outstanding -= 1

    while True:
        t = now()
        more = i < len(mine) if mine is not None else (t < end or i < own_minimum)
        if not more:
            if outstanding == 0:
                break
            deadline = deadline or max(t, end) + spec.drain_s
            if t >= deadline:
                break  # the rest stay TIMEOUT: counted as failed, never as a latency
            select.select([sock], [], [], min(0.1, deadline - t))
            drain()
            continue
        due = t0 + mine[i][1] if mine is not None else t
        if t > end + spec.drain_s:
            break  # a server that stopped reading: what was not sent is counted as failed
        if outstanding >= limit:
            held = held or t >= due
            select.select([sock], [], [], 0.1)
            drain()
            continue
        wait = due - t
        if wait > SPIN_S:
            if select.select([sock], [], [], wait - SPIN_S)[0]:
                drain()
            continue
        if wait > 0:
            drain()
            continue
        rid = mine[i][0] if mine is not None else i * spec.generators + spec.index
        sent = now()  # before the call: the server may read it before send() returns
        try:
            sock.send(wire.REQUEST.pack(rid), DONTWAIT)
        except BlockingIOError:  # the server is not reading: take its answers, then retry
            drain()
            select.select([sock], [sock], [], 0.01)
            continue
        requests[rid] = Request(rid, due - t0, sent=sent - t0, held=held)
        outstanding += 1
        i, held = i + 1, False
    for rid, arrival in (mine or [])[i:]:
        requests[rid] = Request(rid, arrival)
    sock.send(wire.REQUEST.pack(wire.STOP))
    return list(requests.values())


FIELDS = ("id", "scheduled", "sent", "received", "started", "first", "done", "completed", "status", "held")


def write_records(requests: list[Request], path: str) -> None:
    rows = [[getattr(r, f) for f in FIELDS] for r in requests]
    with open(path, "w") as out:
        json.dump({"fields": FIELDS, "rows": rows}, out)


def read_records(path: str) -> list[Request]:
    with open(path) as handle:
        data = json.load(handle)
    return [Request(**dict(zip(data["fields"], row))) for row in data["rows"]]
