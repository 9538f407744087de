"""The start-up breakdown: where the time between the parent's spawn and the end of the
first step went. Through a remoting layer the phases move independently (context
creation crosses the layer; importing a framework does not), so they are recorded apart.
Each phase is the time since the previous mark, so together they sum to the time to the
first step."""

from __future__ import annotations

import json
import os
import tempfile
import time

from runners.contracts import Metric

PHASES = {
    "import": "interpreter start, the worker's and the framework's imports",
    "device_init": "device and context initialization (CUDA context, TensorFlow's devices)",
    "build": "model construction and weight loading, in host memory",
    "to_device": "moving the model (and a device-resident batch) to the device",
    "first_step": "the first step: data, compilation or tracing, first kernels",
}
METRICS = {phase: Metric(f"startup_{phase}_s", "s", f"start-up: {doc}") for phase, doc in PHASES.items()}


# Set in a worker forked from a fork server (runners/worker/fork_server.py): what it inherited.
FORKED_VARIABLE = "VGPU_BENCH_FORKED"


def inherited() -> dict | None:
    """What this worker inherited from its fork servers (the framework server's and the model
    server's pids, when they started, how long their imports took, how many runs the model
    server forked before, what it had imported), or None for a worker started afresh."""
    text = os.environ.get(FORKED_VARIABLE)
    return json.loads(text) if text else None


class Startup:
    def __init__(self, spawned_at: float):
        self.last = spawned_at
        self.seconds: dict[str, float] = {}
        # How a phase went: where the weights came from (build); where its temporary files go
        # (its own folder, which the parent removes after it: runners/parent/launch.py)
        self.details: dict[str, object] = {"temp_dir": tempfile.gettempdir()}
        if forked := inherited():
            # Its imports happened once, in the server, before this run was asked for: its
            # "import" phase is the fork (and the servers' starts when this run asked for them).
            self.details["forked"] = forked

    def mark(self, phase: str, at: float | None = None) -> None:
        """`phase` ended now (or at `at`); a phase marked again accumulates."""
        now = time.time() if at is None else at
        self.seconds[phase] = self.seconds.get(phase, 0.0) + max(0.0, now - self.last)
        self.last = max(self.last, now)
