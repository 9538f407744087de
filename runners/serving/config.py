"""The knobs of `workload=serve` (docs/serving.md): the load, the server's batching, the SLO,
the searches, interference. Shared by every process, standard library only; the config of
the serve scenario (runners/scenarios/serve.py), a section of its own (`serve.*`) because
the searches and interference vary it beside the workload, in the parent."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)  # as runners.config's checks: composition reports it in one line


class Arrival(Enum):
    poisson = "poisson"  # exponential gaps (MLPerf LoadGen Server, vLLM burstiness 1)
    gamma = "gamma"  # gamma gaps of shape serve.burstiness: < 1 burstier, > 1 more regular


class Aggressor(Enum):
    none = "none"  # the server alone
    train = "train"  # interference: the same model training next to the server (runners/parent/interference.py)
    serve = "serve"  # interference: a second server of the model at serve.aggressor_rate


class Search(Enum):
    none = "none"  # one run at serve.rate
    capacity = "capacity"  # the highest serve.rate meeting the SLO (runners/parent/search.py)
    density = "density"  # the most tenants all meeting the SLO at serve.rate


@dataclass
class SloConfig:
    p99_ms: Optional[float] = None  # latency bound (from the scheduled time) at the 99th percentile
    ttft_ms: Optional[float] = None  # decoders: time to first token bound, at the 99th percentile
    tpot_ms: Optional[float] = None  # decoders: time per output token bound, at the 99th percentile

    def __post_init__(self) -> None:
        for name in ("p99_ms", "ttft_ms", "tpot_ms"):
            value = getattr(self, name)
            _check(value is None or value > 0, f"serve.slo.{name} must be > 0, got {value}")

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.p99_ms, self.ttft_ms, self.tpot_ms))


@dataclass
class ServeConfig:
    """`workload=serve` (docs/serving.md): the load, the server's batching, the SLO, the searches."""

    rate: Optional[float] = 20.0  # requests/s of the arrival schedule; null: closed loop (needs concurrency)
    concurrency: Optional[int] = None  # at most this many requests outstanding; null: no limit
    arrival: Arrival = Arrival.poisson
    burstiness: float = 1.0  # arrival=gamma: the gamma shape (1 = Poisson)
    duration_s: float = 10.0  # length of the arrival schedule
    max_batch_size: int = 8  # the server's dynamic batching: at most this many requests per batch,
    max_queue_delay_ms: float = 2.0  # waiting at most this long for a batch to fill
    max_queue: int = 1000  # requests waiting in the server beyond which new ones are rejected
    poll_us: float = 0.0  # an idle server polls this long before it sleeps (a core kept busy, no wake-up delay)
    drain_s: float = 5.0  # after the last arrival, how long outstanding requests may still complete
    generators: int = 1  # load-generator processes (more when one cannot keep up)
    # A run that sent more than 1% of its requests later than this after their scheduled time
    # did not offer serve.rate: it is `invalid` (more generators, or fewer cores for the model)
    max_send_delay_ms: float = 100.0
    new_tokens: int = 16  # decoders: tokens generated per request after its seq_len-token prompt
    min_duration_s: float = 5.0  # a run is valid only with at least this long a schedule
    min_requests: int = 100  # and this many requests issued
    slo: SloConfig = field(default_factory=SloConfig)
    search: Search = Search.none
    search_max_runs: int = 8  # capacity: probes at most; density: tenants at most
    search_tolerance: float = 0.1  # capacity: stop when the bracket is this narrow (relative)
    aggressor: Aggressor = Aggressor.none  # interference: the victim alone, then next to this aggressor
    aggressor_rate: Optional[float] = None  # aggressor=serve: its rate; null: 4 x serve.rate

    def __post_init__(self) -> None:
        _check(self.rate is None or self.rate > 0, f"serve.rate must be > 0 requests/s, got {self.rate}")
        _check(
            self.concurrency is None or self.concurrency >= 1, f"serve.concurrency must be >= 1, got {self.concurrency}"
        )
        _check(
            self.rate is not None or self.concurrency is not None,
            "serve.rate=null (closed loop) needs serve.concurrency=<requests outstanding>",
        )
        _check(self.poll_us >= 0, f"serve.poll_us must be >= 0, got {self.poll_us}")
        _check(self.burstiness > 0, f"serve.burstiness must be > 0, got {self.burstiness}")
        _check(
            self.arrival is Arrival.gamma or self.burstiness == 1.0,
            "serve.burstiness applies to serve.arrival=gamma (poisson has burstiness 1)",
        )
        for name in ("duration_s", "max_queue_delay_ms", "drain_s", "search_tolerance", "max_send_delay_ms"):
            _check(getattr(self, name) > 0, f"serve.{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_batch_size", "max_queue", "generators", "min_requests", "search_max_runs", "new_tokens"):
            _check(getattr(self, name) >= 1, f"serve.{name} must be >= 1, got {getattr(self, name)}")
        _check(
            self.slo.tpot_ms is None or self.new_tokens >= 2,
            f"serve.slo.tpot_ms bounds the time between output tokens, and serve.new_tokens={self.new_tokens} "
            "makes one per request: give serve.new_tokens >= 2 or drop serve.slo.tpot_ms",
        )
        _check(self.min_duration_s >= 0, f"serve.min_duration_s must be >= 0, got {self.min_duration_s}")
        _check(
            self.duration_s >= self.min_duration_s,
            f"serve.duration_s={self.duration_s:g} is shorter than serve.min_duration_s={self.min_duration_s:g}, "
            "so every run would be invalid: lengthen serve.duration_s or lower serve.min_duration_s",
        )
        _check(
            self.search is Search.none or self.slo.given,
            f"serve.search={self.search.value} needs an SLO: serve.slo.p99_ms=<ms> (decoders: or .ttft_ms, .tpot_ms)",
        )
        _check(
            self.aggressor is Aggressor.none or self.search is Search.none,
            "serve.aggressor runs one victim next to one aggressor: not with serve.search; choose one",
        )
        _check(
            self.aggressor_rate is None or self.aggressor_rate > 0,
            f"serve.aggressor_rate must be > 0 requests/s, got {self.aggressor_rate}",
        )
        _check(
            self.search is Search.none or self.rate is not None,
            f"serve.search={self.search.value} works at a request rate: give serve.rate, not null",
        )
        _check(
            self.aggressor is Aggressor.none or self.rate is not None,
            "serve.aggressor measures a victim at a fixed rate: give serve.rate, not null",
        )
        _check(
            self.search is not Search.capacity or self.rate is not None,
            "serve.search=capacity varies serve.rate: give a starting rate, not null",
        )
