"""The items of `make gpu-check`: every GPU path the suite has, each a few commands run as
a user runs them (with `tracking=none`: MLflow is optional on a GPU host) and a check of
the evidence they wrote. A check returns a note of what it saw; it raises Missing when
the evidence is not there or is implausible, which makes the item `failed` with that reason.

The budgets come from the first run on an H200 (results/reference/nvidia-h200/): each
worker took 12-23 s to its first step (8-16 s of it building BERT-base on the CPU), so
an item costs about that per worker plus 2-3 s per command; items carry only the runs
their check needs. The whole plan stays within PLAN_LIMIT_S; an item may use what the
items before it left of their budgets (runners/cli/gpu_check.py)."""

from __future__ import annotations

import functools
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from runners import REPO_ROOT
from runners.contracts import INVALID, RESULT_FILE, SUCCESS, Check, GroupRecord, Result
from runners.parent.console import invalid_because

PLAN_LIMIT_S = 8 * 60
# (model, workload, precision) of the native item: precision where the H200 showed it matters
# (bert infer, bf16 1.75x slower than a bare loop), training on both model families.
NATIVE_RUNS = (
    ("bert", "infer", "fp32"),
    ("bert", "infer", "bf16"),
    ("bert", "train", "bf16"),
    ("resnet50", "train", "bf16"),
)
COMPILE_MODES = ("inductor", "cudagraphs")
MPS_SHARES = (100, 50, 25)
TENANT_TOLERANCE = 0.05  # a lower share's tenants may be this much faster than a higher one's (noise)
LOWEST_SHARE_SLOWER = 1.2  # tenants at the lowest share at least this much slower than at 100%
OVERHEAD_FILE = "overhead.json"  # written by bench_overhead into its results_dir
HAMI_LIBRARY = "build/hami-core/libvgpu.so"  # what `make hami-core SRC=...` builds
MEMORY_VERDICTS = ("memory_total_matches_quota", "over_quota_fails_cleanly")
SHARE_VERDICT = ("compute_share_holds",)
HAMI_ENGAGED = ("library_mapped", "own_shared_region", "quota_is_total")
LUPINE_BUILD = "build/lupine"  # what `make remoting-layer SRC=...` builds: client/ (the shims), server/
LUPINE_ENGAGED = ("shim_mapped", "server_connection", "server_accepted", "server_logged", "server_device")


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
    keep: tuple[str, ...] = ()  # files the commands write into the item's folder, kept with the evidence


def runs(work: Path) -> list[Result]:
    return [Result.load(p) for p in sorted(work.glob(f"runs/*/{RESULT_FILE}"))]


def groups(work: Path) -> list[GroupRecord]:
    return [GroupRecord.load(p) for p in sorted(work.glob("groups/*.json"))]


def successful(work: Path, expected: int) -> list[Result]:
    found = runs(work)
    bad = [
        f"{r.display_name}: {r.status} ({r.error.message if r.error else invalid_because(r)})"
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
    found = successful(work, len(NATIVE_RUNS))
    ran = {(r.model.name if r.model else "?", r.workload, r.config["workload"]["precision"]) for r in found}
    need(ran >= set(NATIVE_RUNS), f"ran {sorted(ran)}, not every one of {NATIVE_RUNS}")
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
        mfu = r.value("mfu")
        need(mfu is None or 0 < mfu <= 1, f"{r.display_name}: MFU {mfu}, beyond the device's peak")  # a wrong peak
        energy = "J/sample %.3g" % r.value("energy_j_per_sample") if r.value("energy_j_per_sample") else "no energy"
        precision = r.config["workload"]["precision"]
        notes.append(
            f"{r.model.name if r.model else '?'} {r.workload} {precision}: {r.value('throughput'):.0f}/s,"
            f" wall/device {wall_over_device:.2f}, {'MFU %.2f' % mfu if mfu is not None else 'no MFU'}, {energy}"
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


def _check_named(r: Result, name: str) -> Optional[Check]:
    return next((c for c in (r.evidence.checks if r.evidence else []) if c.name == name), None)


def check_compile(work: Path, output: str) -> str:
    """Each compiled mode ran its measured steps (success, `compiled_mode_ran` passed), or it
    fell back and the run says so (invalid, that check failed): never a fallback's numbers
    under the mode's name."""
    found = runs(work)
    modes = sorted(str(r.config["workload"].get("compile")) for r in found)
    need(modes == sorted(COMPILE_MODES), f"compiled modes with a result: {modes}, expected {list(COMPILE_MODES)}")
    notes = []
    for r in found:
        mode, ran = r.config["workload"]["compile"], _check_named(r, "compiled_mode_ran")
        need(ran is not None, f"{r.display_name}: no compiled_mode_ran check ({r.status})")
        counters = r.details.get("compile") or {}
        if ran.passed:
            need(r.ok, f"{r.display_name}: the mode ran, yet the run is {r.status}")
            breaks, replays = counters.get("graph_breaks"), counters.get("cudagraph_replays")
            notes.append(
                f"{mode}: {r.value('throughput'):.0f}/s, {breaks} graph breaks"
                + (f", {replays} CUDA graph replays" if replays is not None else "")
            )
        else:
            need(r.status == INVALID, f"{r.display_name}: {mode} fell back ({ran.detail}), yet the run is {r.status}")
            notes.append(f"{mode}: invalid as it should be: {ran.detail}")
    return "; ".join(notes)[:400]


def check_generate(work: Path, output: str) -> str:
    [r] = successful(work, 1)
    need(r.value("ttft_ms_p50") is not None and r.value("tpot_ms_p50") is not None, "no TTFT/TPOT")
    ttft, tpot, rate = r.value("ttft_ms_p50"), r.value("tpot_ms_p50"), r.value("output_tokens_per_s", 0)
    return f"TTFT {ttft:.1f} ms, TPOT {tpot:.2f} ms, {rate:.0f} tok/s"


def check_ddp(work: Path, output: str) -> str:
    """One CUDA device per rank: ranks sharing a device (or on the CPU) measure something else."""
    [r] = successful(work, 1)
    processes = int(r.config["workload"].get("processes") or 0)
    devices = list(r.details.get("ddp", {}).get("per_rank_device", []))
    need(bool(devices), "no per-rank devices recorded")
    need(len(devices) == processes, f"{len(devices)} per-rank devices for {processes} processes: {devices}")
    need(all(str(d).startswith("cuda") for d in devices), f"ranks not on CUDA devices: {devices}")
    need(len(set(devices)) == len(devices), f"ranks share a device: {devices}")
    efficiency = [g.value("scaling_efficiency") for g in groups(work) if g.value("scaling_efficiency") is not None]
    return f"ranks on {devices}" + (f", scaling efficiency {efficiency[0]:.2f}" if efficiency else "")


def check_mps_tenants(work: Path, output: str) -> str:
    """Two tenants at each MPS share. Against the workload alone at 100%, tenants at a lower share
    are slower: 100% <= 50% <= 25% (within TENANT_TOLERANCE), and 25% clearly so (a daemon that
    ignores the share gives the same figures at every share). Each share's own slowdown (tenant
    against the run alone at that share) shrinks as the share drops: tenants contend less."""
    successful(work, 3 * len(MPS_SHARES))  # per share: the run alone and 2 tenants
    by_id = {r.run_id: r for r in runs(work)}
    per_share: dict[int, GroupRecord] = {}
    for g in groups(work):
        alone = [by_id.get(m.run_id) for m in g.members if m.role == "alone"]
        if g.kind == "tenants" and alone and alone[0] is not None:
            per_share[int(alone[0].config["backend"]["sm_percent"])] = g
    need(sorted(per_share) == sorted(MPS_SHARES), f"tenant groups for shares {sorted(per_share)} of {MPS_SHARES}")
    for share, g in per_share.items():
        figures = (g.value("alone_throughput"), g.value("aggregate_throughput"), g.value("tenants"))
        need(all(v is not None and v > 0 for v in figures), f"{share}%: no tenant figures ({g.status})")
    full = per_share[100].value("alone_throughput")
    slowdown = {s: full * g.value("tenants") / g.value("aggregate_throughput") for s, g in per_share.items()}
    order = sorted(MPS_SHARES, reverse=True)  # 100, 50, 25
    shown = ", ".join(f"{s}%: {slowdown[s]:.2f}x" for s in order)
    for higher, lower in zip(order, order[1:]):
        need(
            slowdown[lower] >= slowdown[higher] * (1 - TENANT_TOLERANCE),
            f"tenants at {lower}% are faster than at {higher}% (slowdown vs alone at 100%: {shown})",
        )
    need(
        slowdown[order[-1]] >= slowdown[order[0]] * LOWEST_SHARE_SLOWER,
        f"tenants at {order[-1]}% barely slower than at {order[0]}%: the share did not engage ({shown})",
    )
    own = ", ".join(f"{s}%: {per_share[s].value('mean_slowdown', 0):.2f}x" for s in order)
    return f"tenant slowdown vs alone at 100%: {shown}; vs alone at the same share: {own}"


def check_probe(work: Path, output: str, verdicts: tuple[str, ...]) -> str:
    """The probe's verdicts decide its status: every quota that holds -> success; one that does
    not -> invalid with the reason. Either is an ok item (a layer that does not enforce what it
    was asked is a finding, said so); a verdict missing, or a status that contradicts them, is not."""
    found = runs(work)
    probes = [r for r in found if r.backend.get("name") != "native"]
    need(len(probes) == 1, f"{len(probes)} probe runs under the backend, expected 1")
    [r] = probes
    probe = r.details.get("probe") or {}
    need(bool(probe), f"{r.display_name}: no probe figures ({r.status}: {r.error.message if r.error else ''})"[:300])
    group = next((g for g in groups(work) if g.kind == "probe_reference"), None)
    seen = dict(probe.get("verdicts") or {})
    if group is not None and "compute_share_holds" in group.details:
        seen["compute_share_holds"] = group.details["compute_share_holds"]
    absent = [v for v in verdicts if v not in seen]
    need(not absent, f"no verdict {absent} (the probe's verdicts: {sorted(seen)})")
    notes = []
    if "memory_total_matches_quota" in verdicts:
        quota = probe.get("memory_quota_mb") or 0
        notes.append(
            f"memory: quota {quota:.0f} MiB, total seen {probe['memory_total_seen_mb']:.0f},"
            f" filled {probe.get('filled_before_failure_mb', 0):.0f} then {probe.get('fill_outcome')}"
        )
    if "compute_share_holds" in verdicts:
        achieved = group.value("compute_share_achieved") if group else None
        need(achieved is not None, "no compute share achieved")
        notes.append(
            f"compute share: configured {group.details.get('compute_share_configured')}%, achieved {achieved:.1f}%"
        )
    failed = [v for v in verdicts if not seen[v]]
    memory_failed = [v for v in failed if v != "compute_share_holds"]
    if memory_failed:
        need(r.status == INVALID, f"{memory_failed} do not hold, yet the probe run is {r.status}")
    else:
        need(r.ok, f"{r.display_name}: {r.status} ({r.error.message if r.error else 'no error recorded'})"[:300])
    if "compute_share_holds" in failed:
        need(group.status == INVALID, f"the compute share does not hold, yet its group is {group.status}")
    elif group is not None and "compute_share_holds" in verdicts:
        need(group.status == SUCCESS, f"the compute share holds, yet its group is {group.status}")
    verdict = "holds" if not failed else f"invalid as it should be: {', '.join(failed)} false"
    return f"{verdict}; " + "; ".join(notes)


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


def _check_engaged(work: Path, output: str) -> str:
    """HAMi-core engaged: its library mapped into the worker, the run's own shared region, and
    the quota as the total the worker's cudaMemGetInfo reports."""
    [r] = successful(work, 1)
    for name in HAMI_ENGAGED:
        check = _check_named(r, name)
        need(check is not None, f"{r.display_name}: no {name} check")
        need(check.passed, f"{r.display_name}: {name} failed: {check.detail}")
    return f"{r.value('throughput'):.0f}/s under HAMi-core; {_check_named(r, 'quota_is_total').detail}"


def check_overhead(work: Path, output: str) -> str:
    """The suite against a bare loop, from the file bench_overhead writes (never printed text)."""
    path = work / OVERHEAD_FILE
    need(path.is_file(), f"no {OVERHEAD_FILE} written")
    try:
        cases = json.loads(path.read_text())["cases"]
    except (ValueError, KeyError, TypeError) as exc:
        raise Missing(f"{OVERHEAD_FILE} unreadable: {type(exc).__name__}: {exc}") from None
    need(isinstance(cases, list) and bool(cases), f"{OVERHEAD_FILE} has no cases")
    notes = []
    for case in cases:
        ratio = case.get("ratio") if isinstance(case, dict) else None
        name = case.get("name", "?") if isinstance(case, dict) else "?"
        ok = isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and math.isfinite(ratio) and ratio > 0
        need(ok, f"{name}: suite/loop ratio {ratio!r}, not a finite positive number")
        ms = f" ({case.get('suite_ms', 0):.2f} vs {case.get('loop_ms', 0):.2f} ms)" if case.get("loop_ms") else ""
        notes.append(f"{name}: suite/loop {ratio:.3f}{ms}")
    return "; ".join(notes)


def _lupine_engaged(r: Result) -> None:
    for name in LUPINE_ENGAGED:
        check = _check_named(r, name)
        need(check is not None, f"{r.display_name}: no {name} check")
        need(check.passed, f"{r.display_name}: {name} failed: {check.detail}")


def _sides(found: list[Result]) -> dict[tuple[str, str], Result]:
    return {(r.config["workload"]["precision"], r.backend.get("name", "?")): r for r in found}


def check_lupine_bert(work: Path, output: str) -> str:
    """Native and LUPINE (its own server on this host, loopback) ran BERT at each precision,
    LUPINE engaged (shim mapped, the server's connection, log and GPU): the ratio of their
    latencies is the layer's cost at its floor."""
    found = _sides(successful(work, 2 * len(LUPINE_PRECISIONS)))
    notes = []
    for precision in LUPINE_PRECISIONS:
        native, lupine = found.get((precision, "native")), found.get((precision, "lupine"))
        need(native is not None and lupine is not None, f"{precision}: ran {sorted(found)}, not native and lupine")
        _lupine_engaged(lupine)
        ratio = lupine.value("latency_ms_mean") / native.value("latency_ms_mean")
        notes.append(
            f"{precision}: native {native.value('throughput'):.0f}/s, lupine {lupine.value('throughput'):.0f}/s,"
            f" latency x{ratio:.2f}"
        )
    return "; ".join(notes)


def check_lupine_parity(work: Path, output: str) -> str:
    successful(work, 2)
    parity = [g for g in groups(work) if g.kind == "parity"]
    need([g.details.get("verdict") for g in parity] == ["pass"], f"parity verdicts {[g.details for g in parity]}"[:300])
    [candidate] = [r for r in runs(work) if r.backend.get("name") == "lupine"]
    _lupine_engaged(candidate)
    return "native vs LUPINE: pass"


def check_lupine_microbench(work: Path, output: str) -> str:
    """launch, launch+sync, malloc, memcpy of the bare GPU and through LUPINE: the overhead
    model's inputs for this layer (docs/overhead_model.md)."""
    found = {r.backend.get("name"): r for r in successful(work, 2)}
    need(set(found) == {"native", "lupine"}, f"microbenchmarks of {sorted(found)}, not native and lupine")
    _lupine_engaged(found["lupine"])
    parts = []
    for key in ("launch_us", "launch_sync_us", "malloc_us"):
        base, over = found["native"].value(key), found["lupine"].value(key)
        need(base is not None and over is not None, f"no {key} on both sides")
        parts.append(f"{key} {base:.1f} -> {over:.1f}")
    bandwidth = "h2d_pinned_1g_gbps"
    base, over = found["native"].value(bandwidth), found["lupine"].value(bandwidth)
    if base is not None and over is not None:
        parts.append(f"{bandwidth} {base:.1f} -> {over:.1f}")
    return "native -> lupine: " + ", ".join(parts)


def check_lupine_profile(work: Path, output: str) -> str:
    [r] = successful(work, 1)
    _lupine_engaged(r)
    return "under LUPINE: " + check_profile(work, output)


def no_lupine(build: Path) -> Callable[[], str]:
    def reason() -> str:
        missing = [
            p for p in (build / "client" / "libcuda.so.1", build / "server" / "lupine_driver_server") if not p.is_file()
        ]
        if not missing:
            return ""
        return (
            f"no LUPINE build at {build} ({', '.join(p.name for p in missing)} missing): build it with `make "
            f"remoting-layer SRC=<LUPINE source folder>` (or name one: lupine_dir=<folder with client/ and server/>)"
        )

    return reason


def no_mps() -> str:
    if shutil.which("nvidia-cuda-mps-control") is None:
        return "no nvidia-cuda-mps-control on PATH (MPS is not installed here)"
    return ""


def no_hami(library: Path) -> Callable[[], str]:
    def reason() -> str:
        if library.is_file():
            return ""
        return (
            f"no HAMi-core library at {library}: build it with `make hami-core SRC=<HAMi-core source folder>`"
            f" (or name one: hami_lib=<path to libvgpu.so>)"
        )

    return reason


def items(gpus: int, hami_lib: Optional[Path] = None) -> list[Item]:
    """The plan, with data-parallel ranks for the GPUs present (at least one), and the HAMi-core
    items run with `hami_lib` (skipped, with how to build it, when it is not there)."""
    native = ["backend=native", *SHORT]
    mps = ["backend=mps", *SHORT]
    hami = Path(hami_lib or HAMI_LIBRARY)
    hami = hami if hami.is_absolute() else REPO_ROOT / hami  # gpu-check runs its commands there
    on_hami = ["backend=hami", f"backend.library={hami}"]
    shares = ",".join(str(s) for s in MPS_SHARES)
    bert_infer = [f"workload.precision={NATIVE_RUNS[0][2]},{NATIVE_RUNS[1][2]}"]
    trains = ",".join(m for m, w, _ in NATIVE_RUNS if w == "train")
    # measured on the H200 (s): bert infer ~20 per worker, train ~17, resnet50 ~10; 2-3 per command
    return [
        Item(
            "native", "bert infer fp32 and bf16, bert and resnet50 train bf16: wall vs CUDA-event time, memory "
            "sources, inputs=host bytes, start-up, energy, MFU", 80,
            [["bench", "--multirun", "model=bert", "workload=infer", *bert_infer, "workload.batch_size=32", *native],
             ["bench", "--multirun", f"model={trains}", "workload=train", "workload.precision=bf16",
              "workload.batch_size=32", *native]],
            check_native,
        ),
        Item("profile", "a profile with per-step counts (resnet50 infer)", 15,
             [["bench", "model=resnet50", "profile=true", "profile_steps=3", *native]], check_profile),
        Item("microbench", "launch, sync, malloc, memcpy, GEMM on the bare GPU", 18,
             [["diagnose", "diagnostic=microbench", "backend=native"]], check_microbench),
        Item("compile", "bert infer compiled with inductor and with CUDA graphs: each ran, or says it fell back",
             65, [["bench", "--multirun", "model=bert", f"workload.compile={','.join(COMPILE_MODES)}", *native]],
             check_compile, judge_exit=False),
        Item("generate", "gpt2 greedy decoding: TTFT, TPOT", 18,
             [["bench", "model=gpt2", "workload=generate", "workload.precision=bf16", "workload.new_tokens=16",
               "workload.batch_size=4", *native]], check_generate),
        Item("ddp", f"data-parallel bert training on the {gpus} GPU(s) present, one device per rank", 24,
             [["bench", "model=bert", "workload=train_ddp", f"workload.processes={gpus}", *native]], check_ddp),
        Item("mps_tenants", f"MPS at {shares}% SM with 2 resnet50 tenants each: lower shares slow down more", 70,
             [["bench", "--multirun", "model=resnet50", *mps, f"backend.sm_percent={shares}", "tenants=2"]],
             check_mps_tenants, no_mps),
        Item("mps_probe", "the quota probe under MPS at 50% (with a native reference): its share verdict", 24,
             [["diagnose", "diagnostic=probe", "backend=mps", "backend.sm_percent=50", "diagnostic.duration_s=3"]],
             functools.partial(check_probe, verdicts=SHARE_VERDICT), no_mps, judge_exit=False),
        Item("mps_parity", "parity of resnet50, native vs MPS", 22,
             [["parity", "model=resnet50", "candidate=backend=mps"]], check_parity, no_mps),
        Item("serve_mps", "bert served under MPS: alone, then 2 tenants at 50 requests/s each", 38,
             [["bench", "model=bert", "workload=serve", "backend=mps", "tenants=2", "serve.rate=50",
               "serve.duration_s=3", "serve.min_duration_s=3", "serve.drain_s=1", "serve.slo.p99_ms=200"]],
             check_serve_mps, no_mps),
        Item("ort_cuda", "resnet50 on ONNX Runtime's CUDA provider (or an invalid run without it)", 20,
             [["bench", "model=resnet50", "runtime=onnxruntime", "runtime.provider=cuda", *native]],
             check_ort_cuda, judge_exit=False),
        Item("bench_overhead", "suite vs a bare loop on the GPU (bert bf16, one round): its overhead.json", 40,
             [["bench_overhead", "cases=[bert-bf16]", "rounds=1", "seconds=1"]], check_overhead,
             keep=(OVERHEAD_FILE,)),
        Item("hami_engage", "bert infer under HAMi-core with a 16g quota: library mapped, quota as the total", 20,
             [["bench", "model=bert", *on_hami, "backend.memory_limit=16g", "workload.batch_size=32", *SHORT]],
             _check_engaged, no_hami(hami)),
        Item("hami_probe", "the quota probe under HAMi-core, 4g and sm_limit 50 (with a native reference): "
             "its memory and share verdicts", 24,
             [["diagnose", "diagnostic=probe", *on_hami, "backend.memory_limit=4g", "backend.sm_limit=50",
               "diagnostic.duration_s=3"]],
             functools.partial(check_probe, verdicts=MEMORY_VERDICTS + SHARE_VERDICT), no_hami(hami),
             judge_exit=False),
    ]  # fmt: skip


LUPINE_PRECISIONS = ("fp32", "bf16")


def optional_items(lupine_dir: Optional[Path] = None) -> list[Item]:
    """Items beyond the 8-minute plan (it is full), run by name: `make gpu-check
    ARGS="only=[lupine_bert,lupine_parity,lupine_microbench,lupine_profile]"` (about 4 minutes).
    LUPINE over loopback on the same GPU, its server started by the suite; skipped, with how
    to build it, when `lupine_dir` holds no build."""
    build = Path(lupine_dir or LUPINE_BUILD)
    build = build if build.is_absolute() else REPO_ROOT / build
    absent = no_lupine(build)
    on = [
        "backend.client_dir=" + str(build / "client"),
        "backend.server_program=" + str(build / "server" / "lupine_driver_server"),
    ]
    precisions = ",".join(LUPINE_PRECISIONS)
    # ~20 s per BERT worker on the H200 (model built on the CPU, shared weight cache), plus the
    # model's weights over loopback and LUPINE's slower context creation: not yet measured.
    return [
        Item("lupine_bert", f"bert infer {precisions}, native vs LUPINE over loopback: latency ratio, engaged", 120,
             [["bench", "--multirun", "model=bert", "workload=infer", f"workload.precision={precisions}", *side,
               "workload.batch_size=32", *SHORT] for side in (["backend=native"], ["backend=lupine", *on])],
             check_lupine_bert, absent),
        Item("lupine_parity", "parity of bert, native vs LUPINE", 50,
             [["parity", "model=bert", "candidate=backend=lupine " + " ".join(on)]], check_lupine_parity, absent),
        Item("lupine_microbench", "launch, sync, malloc, memcpy: native, then through LUPINE", 45,
             [["diagnose", "diagnostic=microbench", "backend=native"],
              ["diagnose", "diagnostic=microbench", "backend=lupine", *on]],
             check_lupine_microbench, absent),
        Item("lupine_profile", "per-step driver calls and bytes of bert infer under LUPINE", 35,
             [["bench", "model=bert", "profile=true", "profile_steps=3", "backend=lupine", *on, *SHORT]],
             check_lupine_profile, absent),
    ]  # fmt: skip
