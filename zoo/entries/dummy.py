"""A framework-free workload for testing the suite itself: each step sleeps, and the
fault named in VGPU_BENCH_DUMMY_FAULT (set through `backend.extra_env`) is injected:
`raise`, `exit`, `segfault`, `hang`, `sleep:<seconds>` per step, `fail-after:<n>` (every
forward pass after the n-th raises: a server whose batches fail), or `slow-teardown:<seconds>`
(releasing the model takes that long, as a tf.data pipeline joining its threads). VGPU_BENCH_DUMMY_LOAD
names a shared library to load as a framework loads its CUDA runtime (by name, through
the dynamic linker's search path, or by absolute path), for the backends' stand-ins."""

import os
import time

from zoo.base import ZooModel, models


class _SlowToRelease(float):
    """A step time whose release takes `seconds`."""

    seconds = 0.0

    def __del__(self):
        time.sleep(self.seconds)


@models.register
class Dummy(ZooModel):
    name = "dummy"
    framework = "python"
    task = "self-test"
    inputs = "none"
    summary = "No model: sleeps per step and injects faults on request, to test the runners."
    # instant: no work at all (the null server of the serve load generator's benchmark)
    sizes = {"tiny": dict(step_s=0.001), "default": dict(step_s=0.01), "instant": dict(step_s=0.0)}
    default_size = "default"
    hidden = True  # not part of the zoo a user browses
    _passes, _fail_after = 0, None  # forward passes so far; fail-after:<n>

    def build(self, shape=None):
        if os.environ.get("VGPU_BENCH_DUMMY_LOAD"):
            import ctypes

            self._library = ctypes.CDLL(os.environ["VGPU_BENCH_DUMMY_LOAD"])
        fault = os.environ.get("VGPU_BENCH_DUMMY_FAULT", "")
        if fault == "raise":
            raise RuntimeError("dummy workload failed on purpose")
        if fault == "exit":
            os._exit(3)
        if fault == "segfault":
            import ctypes

            ctypes.string_at(0)
        if fault == "hang":
            while True:
                time.sleep(1)
        step_s = float(fault.split(":", 1)[1]) if fault.startswith("sleep:") else self.settings["step_s"]
        self._passes, self._fail_after = 0, int(fault.split(":", 1)[1]) if fault.startswith("fail-after:") else None
        if fault.startswith("slow-teardown:"):
            step_s = _SlowToRelease(step_s)
            step_s.seconds = float(fault.split(":", 1)[1])
        return step_s

    def make_batch(self, batch_size, shape, seed):
        return batch_size

    def forward(self, model, batch):
        self._passes += 1
        if self._fail_after is not None and self._passes > self._fail_after:
            raise RuntimeError(f"forward pass {self._passes} failed on purpose")
        if model:  # time.sleep(0) is still a system call that yields the core
            time.sleep(model)

    def loss(self, model, batch):
        time.sleep(model)
