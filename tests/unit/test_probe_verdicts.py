"""The probe's verdicts decide its status: a quota that does not hold is never a success.
The figures are the first H200 run's (shared evidence h200-2026-12-04/probes/)."""

import contextlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from runners.contracts import INVALID, SUCCESS, ErrorRecord, GroupRef, Result
from runners.diagnostics.probe import COMPUTE_TFLOPS, memory_reason, memory_verdicts, share_verdict
from runners.parent import console, groups

NATIVE_TFLOPS = 655.8870537417652  # probe-native-f9bd9d
HAMI_SM50_TFLOPS = 654.5709809220631  # probe-hami-probe-839c61: sm_limit=50, the limiter did not engage
MPS_50_TFLOPS = 426.3211807992539 * NATIVE_TFLOPS / 656.800655146805  # 64.9% of its own native reference


def _probe(run_id: str, tflops: float, status: str = SUCCESS, group_id: str = "") -> Result:
    result = Result(
        run_id=run_id,
        run_name="probe-hami",
        config_hash="h",
        task="probe",
        workload="",
        model=None,
        backend={"name": "hami", "device": "cuda"},
        device=SimpleNamespace(name="NVIDIA H200"),
        config={},
        status=status,
        group=GroupRef("probe_reference", group_id, "probe") if group_id else None,
    )
    result.set(COMPUTE_TFLOPS, tflops)
    return result


def _run_group(monkeypatch, configured: float, tflops: float, reference: Result = None):
    backend = SimpleNamespace(compute_share=lambda: configured, session=contextlib.nullcontext)
    plan = SimpleNamespace(task="probe", backend=backend, run_name="probe-hami")
    reference = reference or _probe("native", NATIVE_TFLOPS)
    monkeypatch.setattr(groups, "native_reference", lambda plan_, progress: reference)
    monkeypatch.setattr(
        groups, "launch", lambda plan_, progress, ref=None: (_probe("p", tflops, group_id=ref.id), None)
    )
    return groups.run_diagnostic(plan, lambda line: None)


def test_a_share_far_above_the_configured_one_makes_the_group_invalid_with_the_reason(monkeypatch):
    group, runs = _run_group(monkeypatch, 50.0, HAMI_SM50_TFLOPS)
    assert group.status == INVALID
    assert group.details["compute_share_holds"] is False
    assert group.value("compute_share_achieved") == pytest.approx(99.8, abs=0.05)
    reason = group.details["invalid_because"]
    assert "configured 50%, achieved 99.8% of native -> does not hold" in reason
    assert "at most 75.0%" in reason
    assert runs[0][0].status == SUCCESS  # the worker's result stays as it wrote it: the group carries the verdict


def test_a_share_within_the_allowance_holds(monkeypatch):
    group, _ = _run_group(monkeypatch, 50.0, MPS_50_TFLOPS)  # MPS at 50%: 64.9%, fewer SMs clock higher
    assert group.status == SUCCESS and group.details["compute_share_holds"] is True
    assert "invalid_because" not in group.details
    assert group.details["compute_share_verdict"].startswith("compute share: configured 50%, achieved 64.9%")


def test_a_failed_native_reference_leaves_the_share_unjudged_and_says_so(monkeypatch):
    failed = _probe("native", 0.0, status="failed")
    failed.error = ErrorRecord("RuntimeError", "no CUDA device")
    group, _ = _run_group(monkeypatch, 50.0, HAMI_SM50_TFLOPS, reference=failed)
    assert group.status == "failed" and "compute_share_holds" not in group.details
    assert "native reference probe did not succeed (no CUDA device)" in group.details["invalid_because"]


def test_share_verdict_bounds():
    assert share_verdict(50.0, 75.0).holds and not share_verdict(50.0, 75.1).holds
    assert share_verdict(25.0, 30.0).holds and share_verdict(25.0, 30.0).testable
    high = share_verdict(80.0, 99.9)  # 1.5 x 80 > 100: no limit at all would pass
    assert high.holds and not high.testable and "cannot tell a limit from none" in high.line


def test_memory_verdicts_use_a_one_percent_tolerance():
    # H200, HAMi-core memory_limit=4g: total seen 4096 MiB, filling stopped cleanly at 3520 MiB
    assert memory_verdicts(4096.0, 4096.0, 3520.0, "OutOfMemoryError") == {
        "memory_total_matches_quota": True,
        "over_quota_fails_cleanly": True,
    }
    assert memory_reason(4096.0, 4096.0, 3520.0, "OutOfMemoryError") == ""
    # a layer that did not intercept cudaMemGetInfo: the whole H200
    reason = memory_reason(4096.0, 143155.9375, 6144.0, "no failure before the limit")
    assert "memory total: configured 4096 MiB, seen 143156 MiB" in reason
    assert "filled 6144 MiB of a 4096 MiB quota, then no failure before the limit" in reason
    assert not memory_verdicts(4096.0, 4096.0 * 1.02, 3520.0, "OutOfMemoryError")["memory_total_matches_quota"]


def test_the_console_shows_configured_vs_achieved_and_no_success(monkeypatch):
    group, runs = _run_group(monkeypatch, 50.0, HAMI_SM50_TFLOPS)
    lines = console.group_lines(group)
    assert any("compute share: configured 50%, achieved 99.8% of native -> does not hold" in line for line in lines)
    assert any(line.startswith(f"{group.id}: INVALID (") for line in lines)
    result = runs[0][0]
    assert console.status_line(result, group).startswith("INVALID (compute share: configured 50%")
    table = console.summary_table([console.Finished(result, Path("."), True)], [group])
    statuses = list(table.columns[-1].cells)
    assert statuses == ["INVALID: quota does not hold"]
    # the same run in a group whose share held reads ok
    held, held_runs = _run_group(monkeypatch, 50.0, MPS_50_TFLOPS)
    assert console.status_line(held_runs[0][0], held) == "ok"
    assert any("-> holds" in line for line in console.group_lines(held))


def test_a_probe_whose_memory_quota_did_not_hold_reads_invalid_with_its_reason():
    result = _probe("p", NATIVE_TFLOPS, status=INVALID)
    result.details["probe"] = {"invalid_because": memory_reason(4096.0, 143155.9375, 6144.0, "no failure")}
    assert console.status_line(result).startswith("INVALID (memory total: configured 4096 MiB")
    table = console.summary_table([console.Finished(result, Path("."), True)])
    assert list(table.columns[-1].cells) == ["INVALID: quota does not hold"]


def test_the_mlflow_group_run_of_a_share_that_did_not_hold_is_invalid_with_the_verdict(monkeypatch, tmp_path):
    from runners.config import TrackingConfig
    from runners.tracking.write import client_for, log_group

    group, runs = _run_group(monkeypatch, 50.0, HAMI_SM50_TFLOPS)
    runs[0][0].config = {"backend": {"name": "hami"}}
    group.write(tmp_path)
    config = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db")
    run_id = log_group(group, runs[0][0], config, tmp_path)
    client, _ = client_for(config, tmp_path)
    run = client.get_run(run_id)
    assert run.data.tags["status"] == INVALID and run.info.status == "FAILED"
    assert "configured 50%, achieved 99.8% of native -> does not hold" in run.data.tags["verdict"]
    assert run.data.metrics["compute_share_achieved"] == pytest.approx(99.8, abs=0.05)


def test_a_memory_quota_that_did_not_hold_in_the_worker_makes_the_group_invalid_too(monkeypatch):
    backend = SimpleNamespace(compute_share=lambda: 50.0, session=contextlib.nullcontext)
    plan = SimpleNamespace(task="probe", backend=backend, run_name="probe-hami")
    probe = _probe("p", MPS_50_TFLOPS, status=INVALID)  # the share holds; the memory quota did not
    probe.details["probe"] = {"invalid_because": "memory total: configured 4096 MiB, seen 143156 MiB"}
    monkeypatch.setattr(groups, "native_reference", lambda plan_, progress: _probe("native", NATIVE_TFLOPS))
    monkeypatch.setattr(groups, "launch", lambda plan_, progress, ref=None: (probe, None))
    group, _ = groups.run_diagnostic(plan, lambda line: None)
    assert group.status == INVALID and group.details["compute_share_holds"] is True
    assert group.details["invalid_because"] == "memory total: configured 4096 MiB, seen 143156 MiB"
