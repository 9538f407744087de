"""gpu-check's real check functions fed evidence: the H200's own result and group files
(results/reference/nvidia-h200/), as written and made implausible. Each check must fail
(raise Missing) on evidence that is there but wrong, not only on evidence that is absent."""

import copy
import json
import math
from pathlib import Path

import pytest

from runners.cli import gpu_check
from runners.parent import gpu_paths
from runners.parent.gpu_paths import PLAN_LIMIT_S, Item, Missing, items

from conftest import REPO

H200 = REPO / "results" / "reference" / "nvidia-h200"
CHECKS = {i.name: i.check for i in items(1)}  # the plan's own checks


def _load(relative: str) -> dict:
    [path] = H200.glob(relative)
    return json.loads(path.read_text())


def _run(work: Path, plain: dict, **changes) -> dict:
    """Write a result file into work/runs/<run_id>/, after `changes` (dotted keys) are applied."""
    plain = copy.deepcopy(plain)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target = plain
        for key in parents:
            target = target[key]
        target[last] = value
    folder = work / "runs" / plain["run_id"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(plain))
    return plain


def _group(work: Path, plain: dict) -> None:
    (work / "groups").mkdir(parents=True, exist_ok=True)
    (work / "groups" / f"{plain['id']}.json").write_text(json.dumps(plain))


def _missing(name: str, work: Path, match: str) -> None:
    with pytest.raises(Missing, match=match):
        CHECKS[name](work, "")


# -- native ------------------------------------------------------------------------------

NATIVE = "gpu-check-as-landed/native/runs/*-{}/result.json"


def _native(work: Path, **bad) -> None:
    infer32, infer16 = _load(NATIVE.format("7b41c8")), _load(NATIVE.format("1a695d"))
    train16 = _load(NATIVE.format("b62ec1"))
    assert (infer32["config"]["workload"]["precision"], infer16["config"]["workload"]["precision"]) == ("fp32", "bf16")
    _run(work, infer32, **bad)
    _run(work, infer16)
    _run(work, train16)
    _run(work, train16, run_id="resnet50-train", **{"model.name": "resnet50"})


def test_native_passes_on_the_h200s_runs_and_fails_on_implausible_ones(tmp_path):
    _native(tmp_path / "good")
    assert "bert infer bf16: 2985/s" in CHECKS["native"](tmp_path / "good", "")
    _native(tmp_path / "mfu", **{"metrics.mfu.value": 3.2})  # beyond the peak: a wrong peak table
    _missing("native", tmp_path / "mfu", "MFU 3.2")
    _native(tmp_path / "wall", **{"metrics.latency_ms_mean.value": 1.0})  # wall shorter than the GPU's own time
    _missing("native", tmp_path / "wall", "wall 1.0 ms vs device")
    _native(tmp_path / "cpu", **{"device.kind": "cpu"})
    _missing("native", tmp_path / "cpu", "ran on cpu")
    _native(tmp_path / "precision", **{"config.workload.precision": "bf16"})  # fp32 infer never ran
    _missing("native", tmp_path / "precision", "not every one of")


# -- compile -----------------------------------------------------------------------------


def _compile(work: Path, cudagraphs: dict, inductor_check=True) -> None:
    runs = sorted(H200.glob("gpu-check-as-landed/compile/runs/*/result.json"))
    inductor, graphs = (json.loads(p.read_text()) for p in runs)
    assert (inductor["config"]["workload"]["compile"], graphs["config"]["workload"]["compile"]) == (
        "inductor",
        "cudagraphs",
    )
    counters = {"mode": "x", "graph_breaks": 0, "recompiles": 0, "cudagraph_replays": None}
    check = cudagraphs.pop("check", None)
    for plain, ran, changes in ((inductor, inductor_check and {"passed": True}, {}), (graphs, check, cudagraphs)):
        plain = copy.deepcopy(plain)
        if ran:
            plain["evidence"]["checks"].append({"name": "compiled_mode_ran", "detail": "1 graph(s)", **ran})
        _run(work, plain, **{"details.compile": counters, **changes})


def test_compile_needs_proof_that_each_mode_ran(tmp_path):
    # as landed on the H200: no compiled_mode_ran check at all (805/s for cudagraphs, unexplained)
    _compile(tmp_path / "landed", {}, inductor_check=False)
    _missing("compile", tmp_path / "landed", "no compiled_mode_ran check")
    _compile(tmp_path / "good", {"check": {"passed": True}})
    assert "cudagraphs: 805/s, 0 graph breaks" in CHECKS["compile"](tmp_path / "good", "")
    _compile(tmp_path / "silent", {"check": {"passed": False, "detail": "fell back to eager"}})  # yet success
    _missing("compile", tmp_path / "silent", "fell back .*yet the run is success")
    _compile(tmp_path / "honest", {"check": {"passed": False, "detail": "fell back to eager"}, "status": "invalid"})
    assert "cudagraphs: invalid as it should be: fell back to eager" in CHECKS["compile"](tmp_path / "honest", "")


# -- ddp ---------------------------------------------------------------------------------

DDP = "gpu-check-as-landed/ddp/runs/*/result.json"


@pytest.mark.parametrize(
    "devices, processes, why",
    [(["cuda:0", "cuda:0"], 2, "ranks share a device"), (["cuda:0"], 2, "1 per-rank devices for 2"),
     (["cpu"], 1, "not on CUDA devices"), ([], 1, "no per-rank devices")],
)  # fmt: skip
def test_ddp_ranks_run_on_distinct_cuda_devices(tmp_path, devices, processes, why):
    assert CHECKS["ddp"].__name__ == "check_ddp"
    _run(tmp_path / "good", _load(DDP))
    assert CHECKS["ddp"](tmp_path / "good", "").startswith("ranks on ['cuda:0']")
    changes = {"details.ddp.per_rank_device": devices, "config.workload.processes": processes}
    _run(tmp_path / "bad", _load(DDP), **changes)
    _missing("ddp", tmp_path / "bad", why)


# -- MPS tenants -------------------------------------------------------------------------


def _tenants(work: Path, figures: dict[int, tuple[float, float]]) -> None:
    """Per share: the run alone and 2 tenants (the H200's files) and their group, with
    (alone throughput, aggregate tenant throughput)."""
    template = _load("mps-short-path/mps_tenants/groups/*.json")
    runs = {
        p.parent.name: json.loads(p.read_text()) for p in H200.glob("mps-short-path/mps_tenants/runs/*/result.json")
    }
    for share, (alone, aggregate) in figures.items():
        group = copy.deepcopy(template)
        group["id"] = f"tenants-{share}"
        for member in group["members"]:
            member["run_id"] = f"{member['run_id']}-{share}"
            source = runs[member["run_id"].rsplit("-", 1)[0]]
            _run(work, source, run_id=member["run_id"], **{"config.backend.sm_percent": share})
        group["metrics"]["alone_throughput"]["value"] = alone
        group["metrics"]["aggregate_throughput"]["value"] = aggregate
        group["metrics"]["mean_slowdown"]["value"] = 2 * alone / aggregate
        _group(work, group)


def test_tenants_at_lower_shares_slow_down_more(tmp_path):
    plausible = {100: (939.0, 1417.0), 50: (640.0, 1180.0), 25: (330.0, 620.0)}  # 100% as on the H200
    _tenants(tmp_path / "good", plausible)
    assert "100%: 1.33x, 50%: 1.59x, 25%: 3.03x" in CHECKS["mps_tenants"](tmp_path / "good", "")
    ignored = {share: (939.0, 1417.0) for share in (100, 50, 25)}  # a daemon that ignores the share
    _tenants(tmp_path / "ignored", ignored)
    _missing("mps_tenants", tmp_path / "ignored", "barely slower than at 100%")
    inverted = {100: (939.0, 1417.0), 50: (640.0, 1600.0), 25: (330.0, 620.0)}  # 50% faster than 100%
    _tenants(tmp_path / "inverted", inverted)
    _missing("mps_tenants", tmp_path / "inverted", "tenants at 50% are faster than at 100%")
    _tenants(tmp_path / "two", {100: plausible[100], 50: plausible[50]})  # as the H200's run got (budget)
    _missing("mps_tenants", tmp_path / "two", "6 of 9 runs wrote a result")


# -- the probes ---------------------------------------------------------------------------


def _probe(work: Path, run: str, group: str | None = None, group_changes=None, **changes) -> None:
    _run(work, _load(f"probes/runs/*-{run}/result.json"), **changes)
    if group:
        plain = _load(f"probes/groups/{group}.json")
        plain.update(group_changes or {})
        _group(work, plain)


MEMORY_HOLDS = {"memory_total_matches_quota": True, "over_quota_fails_cleanly": True}


def test_hami_probe_reads_the_verdicts_and_the_status_must_agree(tmp_path):
    hami_sm = "839c61"  # HAMi-core sm_limit=50 on the H200: 99.8% of native; memory verdicts added here
    quota = {"details.probe.memory_quota_mb": 4096.0, "details.probe.memory_total_seen_mb": 4096.0}
    verdicts = {"details.probe.verdicts": MEMORY_HOLDS, **quota}
    # as landed: the share does not hold, yet the group is a success
    _probe(tmp_path / "landed", hami_sm, "probe-hami-share-af4487", **verdicts)
    _missing("hami_probe", tmp_path / "landed", "does not hold, yet its group is success")
    # the verdict decides: invalid, with configured vs achieved in the note
    _probe(tmp_path / "honest", hami_sm, "probe-hami-share-af4487", {"status": "invalid"}, **verdicts)
    note = CHECKS["hami_probe"](tmp_path / "honest", "")
    assert note.startswith("invalid as it should be: compute_share_holds false")
    assert "compute share: configured 50.0%, achieved 99.8%" in note and "total seen 4096" in note
    # a memory quota that does not hold, in a run recorded success
    broken = {"details.probe.verdicts": {**MEMORY_HOLDS, "over_quota_fails_cleanly": False}, **quota}
    _probe(tmp_path / "memory", hami_sm, "probe-hami-share-af4487", {"status": "invalid"}, **broken)
    _missing(
        "hami_probe", tmp_path / "memory", r"over_quota_fails_cleanly'\] do not hold, yet the probe run is success"
    )
    # no verdict at all (a probe that judges nothing)
    _probe(tmp_path / "none", hami_sm, "probe-hami-share-af4487", {"status": "invalid"})
    _missing("hami_probe", tmp_path / "none", "no verdict")


def test_mps_probe_holds_only_when_its_group_says_success(tmp_path):
    holds = {"details": {**_load("probes/groups/probe-mps-share-e6a076.json")["details"], "compute_share_holds": True}}
    _probe(tmp_path / "good", "3fb25c", "probe-mps-share-e6a076", holds)
    assert CHECKS["mps_probe"](tmp_path / "good", "").startswith(
        "holds; compute share: configured 50.0%, achieved 64.9%"
    )
    _probe(tmp_path / "contradicts", "3fb25c", "probe-mps-share-e6a076", {**holds, "status": "invalid"})
    _missing("mps_probe", tmp_path / "contradicts", "holds, yet its group is invalid")
    _probe(tmp_path / "lonely", "3fb25c")  # no group: no share measured
    _missing("mps_probe", tmp_path / "lonely", r"no verdict \['compute_share_holds'\]")


# -- HAMi-core engagement ------------------------------------------------------------------


def test_hami_engagement_needs_each_check(tmp_path):
    hami = _load("hami-core/runs/*-bert-infer-hami-*/result.json")
    _run(tmp_path / "good", hami)
    assert "cudaMemGetInfo total 16384 MiB against the quota 16384 MiB" in CHECKS["hami_engage"](tmp_path / "good", "")
    checks = [c for c in hami["evidence"]["checks"] if c["name"] != "quota_is_total"]  # no quota asked
    _run(tmp_path / "bad", hami, **{"evidence.checks": checks})
    _missing("hami_engage", tmp_path / "bad", "no quota_is_total check")


# -- the overhead benchmark's file -----------------------------------------------------------


@pytest.mark.parametrize("ratio", [None, math.nan, math.inf, -1.2, 0, "1.1", True])
def test_the_overhead_ratio_comes_from_its_file_and_must_be_a_positive_number(tmp_path, ratio):
    _missing("bench_overhead", tmp_path, "no overhead.json written")
    case = {"name": "bert-bf16", "model": "bert", "precision": "bf16", "device": "NVIDIA H200", "suite_ms": 10.7,
            "loop_ms": 6.1, "ratio": 1.75, "ci_low": 1.7, "ci_high": 1.8}  # fmt: skip
    (tmp_path / "overhead.json").write_text(json.dumps({"cases": [case]}))
    assert CHECKS["bench_overhead"](tmp_path, "suite / bare 9.99") == "bert-bf16: suite/loop 1.750 (10.70 vs 6.10 ms)"
    (tmp_path / "overhead.json").write_text(json.dumps({"cases": [{**case, "ratio": ratio}]}).replace("NaN", "NaN"))
    _missing("bench_overhead", tmp_path, "not a finite positive number")
    (tmp_path / "overhead.json").write_text('{"cases": []}')
    _missing("bench_overhead", tmp_path, "no cases")


# -- the plan --------------------------------------------------------------------------------


def test_the_plan_fits_eight_minutes_and_hami_items_follow_the_library(tmp_path):
    missing = items(1, tmp_path / "libvgpu.so")
    assert sum(i.budget_s for i in missing) <= PLAN_LIMIT_S == 480
    hami = [i for i in missing if i.name.startswith("hami_")]
    assert len(hami) == 2 and all("make hami-core SRC=" in i.skip_reason() for i in hami)
    (tmp_path / "libvgpu.so").write_bytes(b"\x7fELF")
    present = [i for i in items(1, tmp_path / "libvgpu.so") if i.name.startswith("hami_")]
    assert [i.skip_reason() for i in present] == ["", ""]
    assert all(f"backend.library={tmp_path / 'libvgpu.so'}" in i.commands[0] for i in present)


def test_an_item_may_use_what_earlier_items_left_of_their_budgets(tmp_path, monkeypatch):
    given = []
    monkeypatch.setattr(gpu_check, "_run", lambda argv, log, seconds, env=None: given.append(seconds) or 0)
    plan = [
        Item("absent", "skipped here", 50, [["bench"]], lambda w, o: "", lambda: "not here"),
        Item("first", "uses the bank", 10, [["bench"]], lambda w, o: "fine"),
    ]
    out = tmp_path / "out"
    out.mkdir()
    rows = gpu_check.run_plan(plan, out, tmp_path / "work", "Stand-in GPU")
    assert [r["status"] for r in rows] == ["skipped", "ok"] and 59 < given[0] <= 60
    assert gpu_paths.PLAN_LIMIT_S == 8 * 60


def test_the_h200_reference_loads_and_names_no_path_of_the_machine_it_came_from():
    from runners.contracts import GroupRecord, Result

    results = [Result.load(p) for p in H200.rglob("result.json")]
    groups = [GroupRecord.load(p) for p in H200.rglob("groups/*.json")]
    assert len(results) == 58 and len(groups) == 11  # what `make ingest DIR=results/reference/nvidia-h200` logs
    for path in H200.rglob("*.json"):
        text = path.read_text()
        assert not any(marker in text for marker in ("<checkout>", "<dir>", '"/tmp/', str(REPO))), path


def _expanded(overrides: list[str]) -> list[list[str]]:
    """A --multirun command's overrides, one list per job of its sweep."""
    import itertools

    choices = [
        [f"{o.split('=', 1)[0]}={v}" for v in o.split("=", 1)[1].split(",")]
        if "=" in o and "," in o and "[" not in o and not o.startswith("candidate=")
        else [o]
        for o in overrides
        if o != "--multirun"
    ]
    return [list(job) for job in itertools.product(*choices)]


def test_every_command_of_the_plan_composes_into_a_valid_config(tmp_path):
    """The H200 run of 2026-12-04 lost serve_mps to its own settings (a 3 s schedule under
    serve.min_duration_s=5: every run invalid); composing runs every config check."""
    from runners.cli import parity
    from runners.parent import compose

    composed = 0
    for item in items(1, hami_lib=tmp_path / "libvgpu.so"):
        for root, *overrides in item.commands:
            for job in _expanded(overrides):
                job += [f"results_dir={tmp_path}", "tracking=none"]
                if root != "parity":
                    compose.command_config(job, root)
                else:  # as the parity command does: its own config, then each side's bench config
                    mine, both = parity.split_arguments(compose.quote_values(job, ("baseline", "candidate")))
                    config = compose.command_config(mine, "parity")
                    for side in (config.baseline or "backend=native", config.candidate):
                        compose.command_config([*both, *side.split()], "bench")
                composed += 1
    assert composed >= 20


def test_an_invalid_run_says_why_in_the_items_note(tmp_path):
    serve = _load("gpu-check-as-landed/native/runs/*-1a695d/result.json")
    _run(tmp_path, serve, status="invalid", details={"serve": {"invalid_because": "schedule of 3 s < 5"}})
    with pytest.raises(Missing, match="schedule of 3 s < 5"):
        gpu_paths.successful(tmp_path, 1)
