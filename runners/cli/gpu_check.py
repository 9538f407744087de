"""`make gpu-check` (`python -m runners.cli.gpu_check`): every GPU path of the suite, run
as a user runs it, on the GPU of this machine, in at most 8 minutes.

The plan is printed first, each item with its budget; each item's commands run in their
own session and are stopped at the budget, plus what the items before it left unused of
theirs (so the whole command stays within the plan's total). Each ends `ok` (with what its evidence shows),
`failed` (with the reason) or `skipped` (with why), and the rest go on. The summary
(summary.md, summary.json) and every result and group file go under
`<results_dir>/reference/<gpu name>/`, small enough to commit and `make ingest DIR=...`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from runners import REPO_ROOT
from runners.config import GpuCheckConfig
from runners.errors import USER_ERRORS, UsageError, one_line
from runners.parent import compose
from runners.parent.gpu_paths import Item, Missing, items, optional_items, successful
from runners.worker import weight_cache  # standard library only: the variable's name

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
KEEP = ("result.json", "job.json", "launch.json")  # per run; worker logs only for failed items


def select(plan: list[Item], config: GpuCheckConfig, optional: list[Item] = ()) -> list[Item]:
    """The plan less `skip`, or the items `only` names: those may also be optional ones (beyond the plan's time)."""
    names = [i.name for i in [*plan, *optional]]
    for name in [*config.only, *config.skip]:
        if name not in names:
            raise UsageError(f"unknown gpu-check item {name!r}. Valid: {', '.join(names)}")
    chosen = [*plan, *optional] if config.only else plan
    return [i for i in chosen if (not config.only or i.name in config.only) and i.name not in config.skip]


def plan_text(plan: list[Item]) -> str:
    lines = [f"gpu-check: {len(plan)} items, at most {sum(i.budget_s for i in plan):.0f} s"]
    for i in plan:
        skip = i.skip_reason()
        lines.append(f"  {i.name:<15} {i.budget_s:>4.0f} s  {i.what}" + (f" (skipped here: {skip})" if skip else ""))
    return "\n".join(lines)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def run_item(item: Item, out: Path, work: Path, banked_s: float = 0.0) -> dict:
    """Run one item's commands within its budget (and `banked_s`, what earlier items left
    unused of theirs) and check its evidence."""
    began = time.monotonic()
    limit = item.budget_s + max(0.0, banked_s)
    row = {"item": item.name, "what": item.what, "budget_s": item.budget_s}
    reason = item.skip_reason()
    if reason:
        return {**row, "status": SKIPPED, "seconds": 0.0, "note": reason}
    work.mkdir(parents=True, exist_ok=True)
    log = work / "output.log"
    with log.open("w") as handle:
        for command in item.commands:
            left = limit - (time.monotonic() - began)
            argv = [
                sys.executable,
                "-m",
                f"runners.cli.{command[0]}",
                *command[1:],
                f"results_dir={work}",
                "tracking=none",
            ]
            handle.write(f"$ {' '.join(argv[2:])}\n")
            handle.flush()
            done = _run(argv, handle, left, _shared_cache(work))
            if done is None:
                over = f"over its budget of {item.budget_s:.0f} s" + (
                    f" and the {banked_s:.0f} s earlier items left" if banked_s > 0 else ""
                )
                return _finish(row, began, FAILED, over, work, out, item)
            if done != 0 and item.judge_exit:
                reason = f"`{command[0]}` exited {done}: {_why(work, log.read_text())}"
                return _finish(row, began, FAILED, reason, work, out, item)
    try:
        note = item.check(work, log.read_text())
        return _finish(row, began, OK, note, work, out, item)
    except Missing as exc:
        return _finish(row, began, FAILED, one_line(exc), work, out, item)
    except Exception as exc:  # a check that cannot read what was written is a failed item, not a crash
        return _finish(row, began, FAILED, f"{type(exc).__name__}: {one_line(exc)}", work, out, item)


def _why(work: Path, output: str) -> str:
    """What the failed runs recorded, else the last line of the output that is not a table."""
    try:
        successful(work, 0)
    except Missing as exc:
        return one_line(exc)
    lines = [line for line in output.splitlines() if line.strip() and not set(line.strip()) & set("│┃━─┏┗└┡")]
    return lines[-1][:200] if lines else "no output"


def _shared_cache(work: Path) -> dict[str, str]:
    """Every item's commands share one weight cache (beside the items' folders): a model that
    an earlier item built is not randomly initialized again (8-16 s for BERT-base on an H200)."""
    env = dict(os.environ)
    env.setdefault(weight_cache.DIR_VARIABLE, str(work.parent / ".cache" / "weights"))
    return env


def _run(argv: list[str], log, seconds: float, env: Optional[dict[str, str]] = None) -> Optional[int]:
    """The exit code, or None when it ran past `seconds` (the whole process group is killed)."""
    if seconds <= 0:
        return None
    process = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=grace)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        return None


def _finish(row: dict, began: float, status: str, note: str, work: Path, out: Path, item: Item) -> dict:
    """Keep the evidence: result, job and group files; the output, and worker logs when it failed."""
    dest = out / item.name
    per_run = [p for p in work.glob("runs/*/*") if p.name in KEEP or (status == FAILED and p.name == "worker.log")]
    written = [work / name for name in item.keep]
    for path in [*per_run, *work.glob("groups/*.json"), *written, work / "output.log"]:
        if path.is_file():
            target = dest / path.relative_to(work)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return {**row, "status": status, "seconds": round(time.monotonic() - began, 1), "note": note}


def summary_text(rows: list[dict], gpu: str) -> str:
    lines = [f"# gpu-check on {gpu}", "", "| item | status | s (budget) | note |", "|---|---|---|---|"]
    for r in rows:
        note = r["note"].replace("|", "/")
        lines.append(f"| {r['item']} | {r['status']} | {r['seconds']:.0f} ({r['budget_s']:.0f}) | {note} |")
    counts = {s: sum(r["status"] == s for r in rows) for s in (OK, FAILED, SKIPPED)}
    lines += ["", ", ".join(f"{n} {s}" for s, n in counts.items())]
    return "\n".join(lines) + "\n"


def run_plan(plan: list[Item], out: Path, work: Path, gpu: str) -> list[dict]:
    rows: list[dict] = []
    for item in plan:
        banked = sum(r["budget_s"] - r["seconds"] for r in rows)
        print(f"[{len(rows) + 1}/{len(plan)}] {item.name} (budget {item.budget_s:.0f} s) ...", flush=True)
        rows.append(run_item(item, out, work / item.name, banked))
        print(f"    {rows[-1]['status']} in {rows[-1]['seconds']:.0f} s: {rows[-1]['note']}", flush=True)
        (out / "summary.json").write_text(json.dumps({"gpu": gpu, "items": rows}, indent=2) + "\n")
        (out / "summary.md").write_text(summary_text(rows, gpu))
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    from runners.nvml import visible_gpus

    try:
        config: GpuCheckConfig = compose.command_config(sys.argv[1:] if argv is None else argv, "gpu_check")
        gpus, why = visible_gpus()
        optional = optional_items(Path(config.lupine_dir) if config.lupine_dir else None)
        plan = select(items(max(len(gpus), 1), Path(config.hami_lib) if config.hami_lib else None), config, optional)
        if config.dry_run:
            print(plan_text(plan))
            left = [] if config.only else [i for i in optional if i.name not in config.skip]
            if left:
                print(f"optional (beyond the plan's time; by name: only=[{','.join(i.name for i in left)}]):")
                print("\n".join(plan_text(left).splitlines()[1:]))
            return 0
        if not gpus:
            raise UsageError(
                f"gpu-check needs an NVIDIA GPU: {why} (`make gpu-check ARGS=dry_run=true` lists the plan)"
            )
    except USER_ERRORS as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    gpu = gpus[0]["name"]
    out = Path(config.out) if config.out else Path(config.results_dir) / "reference" / slug(gpu)
    out.mkdir(parents=True, exist_ok=True)
    print(plan_text(plan), flush=True)
    work = Path(config.results_dir) / "gpu-check" / time.strftime("%Y%m%d-%H%M%S")
    rows = run_plan(plan, out, work, gpu)
    print(summary_text(rows, gpu))
    print(f"evidence: {out}")
    return 0 if all(r["status"] != FAILED for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
