"""The items of `make gpu-check`: every GPU path the suite has, each a few commands run as
a user runs them (with `tracking=none`: MLflow is optional on a GPU host) and a check of
the evidence they wrote. A check returns a note of what it saw; it raises Missing when
the evidence is not there, which makes the item `failed` with that reason."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from runners.contracts import RESULT_FILE, GroupRecord, Result


class Missing(Exception):
    """The command ran, but what it should have shown is not in its results."""


@dataclass
class Item:
    name: str
    what: str
    budget_s: float
    commands: list[list[str]]  # each: a runners.cli module, then its overrides
    check: Callable[[Path, str], str]  # (the item's results folder, its output) -> a note
    skip_reason: Callable[[], str] = field(default=lambda: "")  # "" when the item can run here
    judge_exit: bool = True  # False: a command may fail (a run recorded invalid); the check decides


def runs(work: Path) -> list[Result]:
    return [Result.load(p) for p in sorted(work.glob(f"runs/*/{RESULT_FILE}"))]


def groups(work: Path) -> list[GroupRecord]:
    return [GroupRecord.load(p) for p in sorted(work.glob("groups/*.json"))]


def successful(work: Path, expected: int) -> list[Result]:
    found = runs(work)
    bad = [
        f"{r.display_name}: {r.status} ({r.error.message if r.error else 'no error recorded'})"
        for r in found
        if not r.ok
    ]
    if bad:
        raise Missing("; ".join(bad)[:300])
    if len(found) < expected:
        raise Missing(f"{len(found)} of {expected} runs wrote a result")
    return found


def need(condition: bool, what: str) -> None:
    if not condition:
        raise Missing(what)


# Short but real: enough steps for percentiles, a second of measurement, default sizes.
SHORT = ["workload.min_steps=10", "workload.min_duration_s=1", "workload.max_duration_s=10", "workload.warmup_steps=3"]


def check_native(work: Path, output: str) -> str:
    found = successful(work, 8)
    notes = []
    for r in found:
        m = r.measurement
        need(r.device.kind == "cuda", f"{r.display_name} ran on {r.device.kind}")
        need(m is not None and len(m.device_times_ms) == len(m.step_times_ms), f"{r.display_name}: no CUDA-event times")
        wall, device = r.value("latency_ms_mean"), r.value("device_ms_mean")
        need(bool(device) and wall >= device * 0.99, f"{r.display_name}: wall {wall} ms vs device {device} ms")
        wall_over_device = wall / device
        sources = {reading.source for reading in r.memory}
        need("torch.cuda.max_memory_allocated" in sources, f"{r.display_name}: memory sources {sorted(sources)}")
        need(r.value("startup_device_init_s") is not None, f"{r.display_name}: no start-up breakdown")
        if r.workload == "infer":
            need((r.value("to_device_bytes_per_step") or 0) > 0, f"{r.display_name}: inputs=host moved no bytes")
        energy = "J/sample %.3g" % r.value("energy_j_per_sample") if r.value("energy_j_per_sample") else "no energy"
        mfu = f"MFU {r.value('mfu'):.2f}" if r.value("mfu") is not None else "no MFU"
        precision = r.config["workload"]["precision"]
        notes.append(
            f"{r.model.name if r.model else '?'} {r.workload} {precision}: {r.value('throughput'):.0f}/s,"
            f" wall/device {wall_over_device:.2f}, {mfu}, {energy}"
        )
    return "; ".join(notes)


def check_profile(work: Path, output: str) -> str:
    [r] = successful(work, 1)
    launches = r.value("prof_kernel_launches")
    need(bool(launches), "no kernel launches counted per step")
    syncs, h2d = r.value("prof_api_synchronize", 0), r.value("prof_h2d_bytes", 0)
    return f"{launches:.0f} kernels, {syncs:.0f} syncs, {h2d:.0f} B h2d per step"


def check_microbench(work: Path, output: str) -> str:
    [r] = successful(work, 1)
    need(r.value("launch_us") is not None, "no launch latency")
    return (
        f"launch {r.value('launch_us'):.1f} us, launch+sync {r.value('launch_sync_us'):.1f} us,"
        f" h2d pinned 1g {r.value('h2d_pinned_1g_gbps', 0):.1f} GB/s"
    )


def check_compile(work: Path, output: str) -> str:
    found = successful(work, 2)
    return "; ".join(f"{r.config['workload']['compile']}: {r.value('throughput'):.0f}/s" for r in found)


def check_generate(work: Path, output: str) -> str:
    [r] = successful(work, 1)
    need(r.value("ttft_ms_p50") is not None and r.value("tpot_ms_p50") is not None, "no TTFT/TPOT")
    ttft, tpot, rate = r.value("ttft_ms_p50"), r.value("tpot_ms_p50"), r.value("output_tokens_per_s", 0)
    return f"TTFT {ttft:.1f} ms, TPOT {tpot:.2f} ms, {rate:.0f} tok/s"


def check_ddp(work: Path, output: str) -> str:
    found = successful(work, 1)
    devices = [d for r in found for d in r.details.get("ddp", {}).get("per_rank_device", [])]
    need(bool(devices), "no per-rank devices recorded")
    efficiency = [g.value("scaling_efficiency") for g in groups(work) if g.value("scaling_efficiency") is not None]
    return f"ranks on {devices}" + (f", scaling efficiency {efficiency[0]:.2f}" if efficiency else "")


def check_mps_tenants(work: Path, output: str) -> str:
    successful(work, 9)  # per share: the run alone and 2 tenants
    notes = [
        f"{g.name}: slowdown {g.value('mean_slowdown'):.2f}, Jain {g.value('jain_fairness'):.2f}"
        for g in groups(work)
        if g.kind == "tenants" and g.value("mean_slowdown") is not None
    ]
    need(len(notes) == 3, f"{len(notes)} of 3 tenant groups have figures")
    return "; ".join(notes)


def check_mps_probe(work: Path, output: str) -> str:
    successful(work, 1)
    shares = [g.value("compute_share_achieved") for g in groups(work) if g.value("compute_share_achieved") is not None]
    need(bool(shares), "no compute share measured")
    return f"compute share achieved {shares[0]:.0f}% of 50%"


def check_parity(work: Path, output: str) -> str:
    successful(work, 2)
    verdicts = [g.details.get("verdict") for g in groups(work) if g.kind == "parity"]
    need(verdicts == ["pass"], f"parity verdicts {verdicts}")
    return "native vs MPS: pass"


def check_serve_mps(work: Path, output: str) -> str:
    successful(work, 3)  # the server alone, then 2 tenants
    [group] = [g for g in groups(work) if g.kind == "tenants"]
    meeting, p99 = group.value("tenants_meeting_slo"), group.value("worst_tenant_latency_ms_p99")
    need(meeting is not None and p99 is not None, "no per-tenant SLO figures")
    return f"{meeting:.0f}/2 tenants met p99 <= 200 ms, worst tenant p99 {p99:.1f} ms"


def check_ort_cuda(work: Path, output: str) -> str:
    """The CUDA execution provider ran, or (an onnxruntime without it) the run is invalid, never
    CPU numbers labelled as the GPU's."""
    [r] = runs(work)
    checks = {c.name: c for c in (r.evidence.checks if r.evidence else [])}
    need("runtime_provider" in checks, f"{r.display_name}: no provider check ({r.status})")
    provider = checks["runtime_provider"]
    if provider.passed:
        need(r.ok, f"{r.display_name}: {r.status}")
        return f"CUDA provider ran: {r.value('throughput'):.0f}/s"
    need(r.status == "invalid", f"the CUDA provider did not run, yet the run is {r.status}")
    return f"invalid as it should be: {provider.detail}"[:200]


def check_overhead(work: Path, output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if "bare" in line and "/" in line]
    need(bool(lines), "no suite / bare ratio printed")
    return lines[0][:200]


def no_mps() -> str:
    if shutil.which("nvidia-cuda-mps-control") is None:
        return "no nvidia-cuda-mps-control on PATH (MPS is not installed here)"
    return ""


def items(gpus: int) -> list[Item]:
    """The plan, with data-parallel ranks for the GPUs present (at least one)."""
    native = ["backend=native", *SHORT]
    mps = ["model=bert", "backend=mps", *SHORT]
    return [
        Item(
            "native", "bert and resnet50, train and infer, fp32 and bf16: wall vs CUDA-event time, memory sources, "
            "inputs=host bytes, start-up, energy, MFU", 95,
            [["bench", "--multirun", "model=bert,resnet50", "workload=infer,train", "workload.precision=fp32,bf16",
              "workload.batch_size=32", *native]],
            check_native,
        ),
        Item("profile", "a profile with per-step counts (resnet50 infer)", 25,
             [["bench", "model=resnet50", "profile=true", "profile_steps=3", *native]], check_profile),
        Item("microbench", "launch, sync, malloc, memcpy, GEMM on the bare GPU", 25,
             [["diagnose", "diagnostic=microbench", "backend=native"]], check_microbench),
        Item("compile", "bert infer compiled with inductor and with CUDA graphs", 65,
             [["bench", "--multirun", "model=bert", "workload.compile=inductor,cudagraphs", *native]], check_compile),
        Item("generate", "llama 1B greedy decoding: TTFT, TPOT", 40,
             [["bench", "model=llama", "workload=generate", "workload.precision=bf16", "workload.new_tokens=16",
               "workload.batch_size=4", *native]], check_generate),
        Item("ddp", f"data-parallel bert training on the {gpus} GPU(s) present", 40,
             [["bench", "model=bert", "workload=train_ddp", f"workload.processes={gpus}", *native]], check_ddp),
        Item("mps_tenants", "MPS at 100/50/25% SM with 2 tenants each", 60,
             [["bench", "--multirun", *mps, "backend.sm_percent=100,50,25", "tenants=2"]], check_mps_tenants, no_mps),
        Item("mps_probe", "the quota probe under MPS at 50% (with a native reference)", 25,
             [["diagnose", "diagnostic=probe", "backend=mps", "backend.sm_percent=50", "diagnostic.duration_s=3"]],
             check_mps_probe, no_mps),
        Item("mps_parity", "parity of bert, native vs MPS", 30,
             [["parity", "model=bert", "candidate=backend=mps"]], check_parity, no_mps),
        Item("serve_mps", "bert served under MPS: alone, then 2 tenants at 50 requests/s each", 30,
             [["bench", "model=bert", "workload=serve", "backend=mps", "tenants=2", "serve.rate=50",
               "serve.duration_s=5", "serve.drain_s=1", "serve.slo.p99_ms=200"]], check_serve_mps, no_mps),
        Item("ort_cuda", "resnet50 on ONNX Runtime's CUDA provider (or an invalid run without it)", 20,
             [["bench", "model=resnet50", "runtime=onnxruntime", "runtime.provider=cuda", *native]],
             check_ort_cuda, judge_exit=False),
        Item("bench_overhead", "suite vs a bare loop on the GPU", 25,
             [["bench_overhead", "rounds=5", "seconds=1"]], check_overhead),
    ]  # fmt: skip
