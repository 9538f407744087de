"""`make bench-overhead`: a benchmark of the suite itself, not a test. On the same model,
batch and device, in one process, it times the suite's measurement path (the
framework adapter's step, synchronized and timed per step) against a bare
hand-written loop, alternating the order of rounds so machine drift hits all alike,
and prints suite throughput / bare throughput (the goal is >= 0.99). It also runs the
adapter's step in a plain untimed loop: suite / untimed isolates what the per-step
timing and synchronization cost, apart from how the step itself is written."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Optional

from runners.config import Inputs, OverheadConfig, WorkloadConfig
from runners.errors import USER_ERRORS, one_line
from runners.parent import compose


def main(argv: Optional[list[str]] = None) -> int:
    try:
        args: OverheadConfig = compose.command_config(sys.argv[1:] if argv is None else argv, "bench_overhead")
    except USER_ERRORS as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2

    import torch

    import zoo
    from runners.worker import measure
    from runners.worker.frameworks.pytorch import TorchFramework

    device = "cuda" if torch.cuda.is_available() else "cpu"
    entry = zoo.get(args.model)(args.size)
    shape = zoo.InputShape(seq_len=args.seq_len, image_size=args.image_size)
    framework = TorchFramework(device, "fp32", None)
    # The batch stays on the device in every path: what is compared is the measurement alone.
    workload = WorkloadConfig(batch_size=args.batch_size, inputs=Inputs.device)
    suite_step = framework.infer_step(entry, workload, shape, seed=0)
    model = framework.model  # the very same weights for the bare loop
    batch = {k: v.to(device) for k, v in entry.make_batch(args.batch_size, shape, seed=0).items()}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def bare(seconds: float) -> float:
        steps, began = 0, time.perf_counter()
        with torch.inference_mode():
            while time.perf_counter() - began < seconds:
                entry.forward(model, batch)
                steps += 1
            sync()
        return args.batch_size * steps / (time.perf_counter() - began)

    def untimed(seconds: float) -> float:
        steps, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            suite_step()
            steps += 1
        framework.synchronize()
        return args.batch_size * steps / (time.perf_counter() - began)

    def suite(seconds: float) -> float:
        m = measure.run(
            suite_step,
            framework.synchronize,
            warmup_steps=0,
            min_steps=1,
            min_duration_s=seconds,
            max_duration_s=seconds * 10,
        )
        return args.batch_size * len(m.step_times_ms) / (sum(m.step_times_ms) / 1e3)  # as results report it

    paths = {"bare": bare, "untimed": untimed, "suite": suite}
    for path in paths.values():
        path(1.0)  # warm-up
    rounds: list[dict[str, float]] = []
    order_of = list(paths)
    for round_ in range(args.rounds):
        order = order_of[round_ % 3 :] + order_of[: round_ % 3]  # rotate which path goes first
        rounds.append({name: paths[name](args.seconds) for name in order})
        r = rounds[-1]
        print(
            f"round {round_ + 1}: bare {r['bare']:.1f}, untimed {r['untimed']:.1f}, suite {r['suite']:.1f} samples/s",
            flush=True,
        )

    def summary(other: str) -> str:
        ratios = [r["suite"] / r[other] for r in rounds]
        half = 1.96 * statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else float("nan")
        return f"median {statistics.median(ratios):.4f}, mean {statistics.fmean(ratios):.4f} +- {half:.4f} (95% CI)"

    print(
        f"{args.model} ({args.size}) infer, batch {args.batch_size}, {device} ({torch.get_num_threads()} threads), "
        f"{args.rounds} rounds of {args.seconds:g} s:"
    )
    print(f"  suite/bare hand-written loop: {summary('bare')}  (goal >= 0.99)")
    print(f"  suite/untimed same step:      {summary('untimed')}  (the cost of per-step timing and sync)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
