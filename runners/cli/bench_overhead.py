"""`make bench-overhead`: a benchmark of the suite itself, not a test. Per case (BERT fp32,
BERT bf16 autocast, ResNet-50 fp32), it runs a real `make bench` worker through the
parent's launch path and, in a process of its own, a hand-written loop doing the same work
(runners/worker/bare_loop.py: the zoo's model with the same seed, the same seeded batch
copied from host memory each step, outputs copied back, a synchronize per step), over
interleaved rounds whose first side alternates, so drift (clocks, a neighbour) hits both.

Each run gives its median step time. The ratio is suite / loop of the geometric means of
those medians over the rounds, with the 95% interval of runners/analysis/intervals.py
(one value per run, Student's t over the rounds, Welch between the sides; a single round
falls back to the steps' own noise and says so). Writes <results_dir>/overhead.json and
prints a table. The parent never imports torch."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from runners import REPO_ROOT
from runners.config import OVERHEAD_CASES, OverheadConfig
from runners.errors import USER_ERRORS, one_line
from runners.parent import compose

OUTPUT_FILE = "overhead.json"
# Per size preset and model: (model.size, batch size, seq_len, image_size). `full` is what
# users run on a GPU (bert-base 32 x 128 tokens, ResNet-50 32 x 224^2).
SHAPES = {
    "tiny": {"bert": ("tiny", 8, 128, 224), "resnet50": ("tiny", 8, 128, 64)},
    "full": {"bert": ("base", 32, 128, 224), "resnet50": ("full", 32, 128, 224)},
}


@dataclass
class Case:
    name: str
    model: str
    size: str
    precision: str
    device: str
    batch_size: int
    seq_len: int
    image_size: int
    suite_medians_ms: list[float] = field(default_factory=list)
    loop_medians_ms: list[float] = field(default_factory=list)
    suite_steps: list[list[float]] = field(default_factory=list)
    loop_steps: list[list[float]] = field(default_factory=list)
    runs: list[dict[str, str]] = field(default_factory=list)  # where each round's evidence is
    ablations: dict[str, Any] = field(default_factory=dict)  # the first round's loop's, when asked
    error: Optional[str] = None


def bench_overrides(args: OverheadConfig, case: Case, results_dir: Path, backend_args: list[str]) -> list[str]:
    """The `make bench` command line of the suite's side: what a user types, pinned to the case."""
    return [
        *backend_args,
        f"model={case.model}",
        f"model.size={case.size}",
        "workload=infer",
        f"workload.precision={case.precision}",
        f"workload.batch_size={case.batch_size}",
        f"workload.seq_len={case.seq_len}",
        f"workload.image_size={case.image_size}",
        "workload.inputs=host",
        "workload.pinned=false",
        "workload.sync=step",
        "workload.compile=none",
        f"workload.warmup_steps={args.warmup_steps}",
        f"workload.min_steps={args.min_steps}",
        f"workload.min_duration_s={args.seconds}",
        f"workload.max_duration_s={max(10 * args.seconds, args.seconds + 30)}",
        "workload.target_ci=null",
        f"seed={args.seed}",
        f"timeout_s={args.timeout_s}",
        "tracking=none",  # the suite's runs of this benchmark are its evidence, not results to compare
        f"results_dir={results_dir}",
        f"fork_server={str(args.fork_server).lower()}",
    ]


def loop_arguments(args: OverheadConfig, case: Case, device: str, ablation_rounds: int = 0) -> dict[str, Any]:
    """The hand-written loop's arguments (runners/worker/bare_loop.py Loop): the same work."""
    return {
        "model": case.model,
        "size": case.size,
        "precision": case.precision,
        "batch_size": case.batch_size,
        "seq_len": case.seq_len,
        "image_size": case.image_size,
        "device": device,
        "seed": args.seed,
        "warmup_steps": args.warmup_steps,
        "min_steps": args.min_steps,
        "min_duration_s": args.seconds,
        "max_duration_s": max(10 * args.seconds, args.seconds + 30),
        "ablation_rounds": ablation_rounds,
    }


def check_pair(result, loop: dict[str, Any], case: Case, device: str) -> None:
    """Like with like: the worker and the loop ran the same model, batch and device, and
    both copied the batch in from host memory and synchronized each step."""
    m = result.measurement
    problems = []
    if m.inputs != "host" or m.sync != "step" or m.steps_per_time != 1:
        problems.append(f"the suite ran inputs={m.inputs} sync={m.sync} ({m.steps_per_time} steps per time)")
    if result.model.params != loop["params"]:
        problems.append(f"parameters: suite {result.model.params}, loop {loop['params']}")
    suite_bytes = result.value("to_device_bytes_per_step")
    if suite_bytes != loop["to_device_bytes_per_step"]:
        problems.append(f"bytes to the device per step: suite {suite_bytes}, loop {loop['to_device_bytes_per_step']}")
    where = loop["placement"]
    if where["model"] != where["inputs"] or len(where["model"]) != 1:
        problems.append(f"the loop's model is on {where['model']} and its inputs on {where['inputs']}")
    elif not where["model"][0].startswith(device):
        problems.append(f"the loop ran on {where['model'][0]}, the suite's backend on {device}")
    if problems:
        raise RuntimeError(f"{case.name}: not like with like: " + "; ".join(problems))


def run_loop(
    args: OverheadConfig, case: Case, plan_, device: str, folder: Path, ablation_rounds: int = 0
) -> dict[str, Any]:
    """The hand-written loop in a fresh process, with the worker's environment."""
    from runners.parent.launch import run_only_env, worker_env
    from runners.parent.temp_folders import temporary_folder

    folder.mkdir(parents=True)
    out = folder / "loop.json"
    command = [
        sys.executable,
        "-m",
        "runners.worker.bare_loop",
        json.dumps(loop_arguments(args, case, device, ablation_rounds)),
        str(out),
    ]
    with open(folder / "loop.log", "wb") as log, temporary_folder() as temp:
        try:
            proc = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=worker_env(plan_, run_only_env(plan_, folder, temp)),
                cwd=REPO_ROOT,
                timeout=args.timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{case.name}: the loop exceeded timeout_s={args.timeout_s:g}") from None
    if proc.returncode != 0 or not out.exists():
        tail = (folder / "loop.log").read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"{case.name}: the loop exited {proc.returncode}: {tail[0]}")
    return json.loads(out.read_text())


def run_case(args: OverheadConfig, case: Case, folder: Path, backend_args: list[str], say) -> None:
    from runners.parent.launch import launch
    from runners.parent.plan import plan

    config = compose.command_config(bench_overrides(args, case, folder, backend_args), "bench")
    plan_ = plan(config)
    device = plan_.backend.device
    for round_ in range(args.rounds):
        order = ("suite", "loop") if round_ % 2 == 0 else ("loop", "suite")
        loop: dict[str, Any] = {}
        result = None
        for side in order:
            if side == "suite":
                result, run_dir = launch(plan_)
                if not result.ok:
                    why = result.error.message if result.error else "no error recorded"
                    raise RuntimeError(f"{case.name}: the suite's run {result.status}: {why}")
            else:
                loop_dir = folder / "loops" / f"{case.name}-{round_ + 1}"
                loop = run_loop(args, case, plan_, device, loop_dir, args.ablation_rounds if round_ == 0 else 0)
                case.ablations = case.ablations or loop.get("ablations", {})
        check_pair(result, loop, case, device)
        suite_times, loop_times = result.measurement.step_times_ms, loop["step_times_ms"]
        case.suite_steps.append(suite_times)
        case.loop_steps.append(loop_times)
        case.suite_medians_ms.append(statistics.median(suite_times))
        case.loop_medians_ms.append(statistics.median(loop_times))
        clocks = {"suite": result.details.get("sm_clock_mhz"), "loop": loop.get("sm_clock_mhz")}
        case.runs.append({"suite": str(run_dir), "loop": str(loop_dir), "sm_clock_mhz": clocks})
        say(
            f"  {case.name} round {round_ + 1}/{args.rounds} ({' then '.join(order)}): suite p50 "
            f"{case.suite_medians_ms[-1]:.3f} ms ({len(suite_times)} steps), loop p50 "
            f"{case.loop_medians_ms[-1]:.3f} ms ({len(loop_times)} steps)"
            + (
                f"; SM clock MHz suite {clocks['suite']}, loop {clocks['loop']}"
                if clocks["suite"] or clocks["loop"]
                else ""
            )
        )


def summary(case: Case) -> dict[str, Any]:
    """The case's line of overhead.json: suite / loop per-step time and its 95% interval."""

    row: dict[str, Any] = {
        "name": case.name,
        "model": case.model,
        "size": case.size,
        "precision": case.precision,
        "device": case.device,
        "batch_size": case.batch_size,
        "seq_len": case.seq_len if case.model == "bert" else None,
        "image_size": case.image_size if case.model != "bert" else None,
        "rounds": len(case.suite_medians_ms),
        "suite_ms": None,
        "loop_ms": None,
        "ratio": None,
        "ci_low": None,
        "ci_high": None,
        "noise": None,
        "suite_medians_ms": case.suite_medians_ms,
        "loop_medians_ms": case.loop_medians_ms,
        "runs": case.runs,
        "error": case.error,
    }
    if not case.suite_medians_ms:
        return row
    suite_ms, loop_ms, (ratio, low, high), noise = time_ratio(
        case.suite_medians_ms, case.loop_medians_ms, case.suite_steps, case.loop_steps
    )
    row.update(suite_ms=suite_ms, loop_ms=loop_ms, ratio=ratio, ci_low=low, ci_high=high, noise=noise)
    return row


def time_ratio(over_ms: list[float], under_ms: list[float], over_steps=(), under_steps=()):
    """(over's time, under's time, (over / under per-step time, its 95% interval), over's noise)
    from each run's median step time: one value per run, steps per second at that median, and
    the interval of intervals.py (under / over throughput = over / under time)."""
    from runners.analysis import intervals

    over = intervals.side([1e3 / t for t in over_ms], over_steps)
    under = intervals.side([1e3 / t for t in under_ms], under_steps)
    interval = intervals.ratio_interval(over, under)
    return 1e3 / math.exp(over.mean_log), 1e3 / math.exp(under.mean_log), interval, over.noise


def ablation_rows(case: Case) -> list[dict[str, Any]]:
    """What each thing the worker used to do in its window costs the plain loop: with / without."""

    rows = []
    for extra, found in case.ablations.items():
        row: dict[str, Any] = {
            "case": case.name,
            "extra": extra,
            "what": found.get("what"),
            "skipped": found.get("skipped"),
        }
        if found.get("plain_ms") and found.get("with_ms"):
            with_ms, plain_ms, (ratio, low, high), _ = time_ratio(found["with_ms"], found["plain_ms"])
            row.update(
                plain_ms=plain_ms, with_ms=with_ms, ratio=ratio, ci_low=low, ci_high=high, rounds=len(found["with_ms"])
            )
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    def cell(value, spec):
        return "-" if value is None else format(value, spec)

    lines = [
        f"{'case':<14} {'model':<9} {'size':<5} {'device':<6} {'batch':>5} {'rounds':>6} "
        f"{'suite ms':>9} {'loop ms':>9} {'suite/loop':>10}  95% interval"
    ]
    for r in rows:
        interval = f"[{cell(r['ci_low'], '.3f')}, {cell(r['ci_high'], '.3f')}]" if r["ratio"] else r["error"] or "-"
        lines.append(
            f"{r['name']:<14} {r['model']:<9} {r['size']:<5} {r['device']:<6} {r['batch_size']:>5} {r['rounds']:>6} "
            f"{cell(r['suite_ms'], '9.3f')} {cell(r['loop_ms'], '9.3f')} {cell(r['ratio'], '10.3f')}  {interval}"
        )
    return "\n".join(lines)


def cases_of(args: OverheadConfig, device: str) -> list[Case]:
    sizes = args.sizes if args.sizes != "auto" else ("tiny" if device == "cpu" else "full")
    out = []
    for name in args.cases:
        model, precision = OVERHEAD_CASES[name]
        size, batch, seq_len, image_size = SHAPES[sizes][model]
        out.append(Case(name, model, size, precision, device, batch, seq_len, image_size))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args: OverheadConfig = compose.command_config(argv, "bench_overhead")
        from runners.backends import create as create_backend

        results_dir = Path(args.results_dir).resolve()
        backend = create_backend(args.backend, results_dir)
        backend.preflight()  # before anything runs: backend=native without a GPU is one line
        device = backend.device
        cases = cases_of(args, device)
    except USER_ERRORS as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2

    # The suite's side gets the backend as it was given (backend=native backend.threads=4 ...).
    backend_args = [a for a in argv if a.split("=", 1)[0].lstrip("+").split(".")[0] == "backend"]
    folder = results_dir / "overhead" / time.strftime("%Y%m%d-%H%M%S")
    print(
        f"bench-overhead: {len(cases)} case(s) on {device} (backend={args.backend.name}), {args.rounds} round(s) of "
        f"{args.seconds:g} s per side; evidence in {folder}",
        flush=True,
    )
    for case in cases:
        try:
            run_case(args, case, folder, backend_args, lambda line: print(line, flush=True))
        except USER_ERRORS as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001  (a failed case is recorded, the others still run)
            case.error = one_line(exc)
            print(f"  {case.name}: FAILED: {case.error}", flush=True)
    rows = [summary(case) for case in cases]
    extras = [row for case in cases for row in ablation_rows(case)]
    document = {
        "interval": "95%, runners/analysis/intervals.py over the rounds' median step times",
        "backend": args.backend.name,
        "evidence": str(folder),
        "cases": rows,
        "ablations": extras,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / OUTPUT_FILE).write_text(json.dumps(document, indent=1))
    print(table(rows))
    for row in extras:
        if row.get("ratio") is None:
            print(f"  {row['case']} loop + {row['extra']}: skipped ({row['skipped'] or 'no reading'})")
        else:
            print(
                f"  {row['case']} loop + {row['extra']}: {row['with_ms']:.3f} vs {row['plain_ms']:.3f} ms, "
                f"x{row['ratio']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}] ({row['what']})"
            )
    print(f"-> {results_dir / OUTPUT_FILE}")
    return 0 if all(r["error"] is None and r["ratio"] is not None and math.isfinite(r["ratio"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
