"""Like is compared with like: pairs match on every setting that changes the work, every
matching run enters, and the regression gate stays on one backend and device. Runs are
built in memory (the store's search is MLflow's; tested in tests/integration)."""

import io

from rich.console import Console

from runners.analysis.compare import Comparison, compare, compare_runs
from runners.cli.analyze import _print
from runners.tracking.read import Run

PARAMS = {
    "workload.precision": "fp32",
    "workload.batch_size": "8",
    "workload.seq_len": "128",
    "workload.image_size": "224",
    "workload.inputs": "host",
    "workload.pinned": "False",
    "workload.sync": "step",
    "workload.sync_every": "10",
    "workload.compile": "none",
    "workload.tf_mode": "graph",
    "backend.threads": "None",
    "workload.min_steps": "10",
}
TAGS = {"model": "bert", "workload": "infer", "model_size": "base", "framework": "pytorch", "status": "success"}


def _run(n: int, throughput: float = 100.0, start: int = 0, tags=None, **params) -> Run:
    all_tags = {**TAGS, "backend": "cpu", "device_name": "Xeon", "run_id": f"r{n}", "label": "a", **(tags or {})}
    return Run(f"m{n}", all_tags, {**PARAMS, **params}, {"throughput": throughput}, start)


class Store:
    def __init__(self, runs, noise=None):
        self.all = runs
        self.noise = noise or {}  # backend -> its measured run-to-run variation

    def runs(self, filters):
        return [
            r
            for r in sorted(self.all, key=lambda r: -r.start_time)
            if all(r.tags.get(k) == v for k, v in filters.items())
        ]

    def run_to_run_cv(self, run):
        return self.noise.get(run.tags["backend"])

    def invalid(self, filters):
        return []

    def result(self, run):
        class Measurement:
            step_times_ms = [10.0, 10.5, 9.5, 10.2, 9.8, 10.1, 9.9, 10.0, 10.3]

        class Result:
            measurement = Measurement()

        return Result()


def test_runs_that_differ_in_what_a_step_does_never_pair():
    base = [_run(1)]
    for setting in ({"workload.seq_len": "512"}, {"backend.threads": "1"}, {"workload.compile": "inductor"},
                    {"workload.inputs": "device"}, {"workload.sync": "window"}):  # fmt: skip
        comparison = compare_runs(Store([]), base, [_run(2, **setting)], 0.02, sides=frozenset({"label"}))
        assert not comparison.rows and len(comparison.missing) == 2, setting
    # a vision model's seq_len, or sync_every without sync=window, does nothing: they pair
    vision = {"model": "resnet50", "label": "b"}
    idle = {"workload.seq_len": "16", "workload.sync_every": "3"}
    same = compare_runs(
        Store([]), [_run(1, tags=vision)], [_run(2, tags=vision, **idle)], 0.02, sides=frozenset({"label"})
    )
    assert len(same.rows) == 1


def test_every_matching_run_of_a_side_enters_the_interval():
    base = [_run(1, 100.0), _run(2, 102.0)]
    cand = [_run(3, 90.0), _run(4, 91.0), _run(5, 89.0)]
    [row] = compare_runs(Store([]), base, cand, 0.02, sides=frozenset({"label"})).rows
    assert (row.baseline_runs, row.candidate_runs) == (2, 3) and row.noise == "runs/runs"
    assert 0.87 < row.ratio < 0.9


def test_the_sides_own_key_and_its_backend_knobs_are_not_paired_on():
    native = _run(1, tags={"backend": "native", "device_name": "NVIDIA H200"})
    vgpu = _run(2, tags={"backend": "vgpu", "device_name": "Orion vGPU"}, **{"backend.vgpus": "1"})
    assert len(compare_runs(Store([]), [native], [vgpu], 0.02, sides=frozenset({"backend"})).rows) == 1


def test_regressions_stay_on_the_baseline_s_backend_and_device():
    baseline = _run(1, start=1, tags={"backend": "native", "device_name": "NVIDIA H200", "label": "rel-1"})
    later_cpu = _run(2, 10.0, start=2, tags={"backend": "cpu", "device_name": "Xeon", "label": "rel-2"})
    later_gpu = _run(3, 99.0, start=3, tags={"backend": "native", "device_name": "NVIDIA H200", "label": "rel-2"})
    comparison = compare(Store([baseline, later_cpu, later_gpu]), {"label": "rel-1"}, None, 0.02, "label=rel-1", "")
    [row] = comparison.rows
    assert row.candidate_run_id == "r3" and row.candidate_runs == 1  # never the CPU run


def test_the_compact_table_fits_120_columns():
    base = [_run(1, 100.0, start=1), _run(2, 101.0, start=3)]
    cand = [_run(3, 80.0, start=2), _run(4, 82.0, start=4)]  # alternated with the baseline's
    comparison = compare_runs(
        Store([]), base, cand, 0.02, "label='release 2.3'", "label='release 2.4'", frozenset({"label"})
    )
    buffer = io.StringIO()
    _print(comparison, out=Console(file=buffer, width=120))
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 120
    assert any("bert/infer/fp32/bs8/base" in line and "slower" in line for line in lines)  # one row, unwrapped


def test_a_sweep_report_shows_every_backend_pair_with_its_values():
    from runners.analysis import sweep_view
    from runners.cli.analyze import _report_candidates

    native = [_run(1, 100.0, tags={"backend": "native"}), _run(2, 101.0, tags={"backend": "native"})]
    store = Store([*native, _run(3, 80.0, tags={"backend": "mps"}), _run(4, 99.0, tags={"backend": "vgpu"})])
    sides = _report_candidates(store, "backend=native label=a", "")
    assert [spec for spec, _ in sides] == ["backend=mps label=a", "backend=vgpu label=a"]
    comparisons = [compare(store, {"backend": "native", "label": "a"}, side, 0.02, "backend=native", spec)
                   for spec, side in sides]  # fmt: skip
    heat = sweep_view.heat_map(comparisons)
    assert heat.count("class='cell'") == 2 and "data-ratio='0.796'" in heat  # 80 / geometric mean of 100, 101
    chart = sweep_view.overhead_chart(comparisons[0])
    assert "<title>bert/infer/fp32/bs8/base: overhead +20.4%" in chart  # the hover shows the value


def _pair(base, cand, store=None, sides=frozenset({"label"})):
    [row] = compare_runs(store or Store([]), base, cand, 0.02, sides=sides).rows
    return row


def test_one_run_a_side_without_a_measured_variation_gives_no_verdict():
    row = _pair([_run(1, 100.0, start=1)], [_run(2, 80.0, start=2)])  # 20% apart, yet one run says nothing
    assert row.verdict == "inconclusive" and row.noise == "steps only/steps only"
    assert row.reason == f"run-to-run noise unknown, repeats>={row.runs_to_decide} would decide"
    buffer = io.StringIO()
    _print(Comparison("a", "b", 0.02, [row], []), out=Console(file=buffer, width=120))
    shown = " ".join(buffer.getvalue().split())
    assert "0.800 (no interval)" in shown and "run-to-run noise unknown" in shown and "slower" not in shown


def test_each_side_keeps_its_own_run_to_run_variation():
    from runners.stats import RunNoise

    native, vgpu = {"backend": "native", "device_name": "H200"}, {"backend": "vgpu", "device_name": "H200"}
    store = Store([], noise={"native": RunNoise(0.02, 5, "g1")})  # only the baseline's was measured
    row = _pair([_run(1, 100.0, tags=native)], [_run(2, 90.0, tags=vgpu)], store, frozenset({"backend"}))
    assert row.noise == "measured/steps only" and row.candidate_run_cv is None  # never lent the baseline's 2%
    assert row.reason.startswith("run-to-run noise unknown")


def test_sides_run_in_separate_blocks_of_time_give_no_verdict():
    base = [_run(1, 100.0, start=1), _run(2, 101.0, start=2), _run(3, 100.5, start=3)]
    cand = [_run(4, 79.0, start=4), _run(5, 78.5, start=5), _run(6, 79.2, start=6)]
    row = _pair(base, cand)
    assert row.verdict == "inconclusive" and row.reason.startswith("sides not interleaved in time")
    for run, start in zip(cand, (1.5, 2.5, 3.5)):  # the same figures, alternated: the difference is real
        run.start_time = start
    assert _pair(base, cand).verdict == "slower"


def test_make_regressions_does_not_fail_on_a_pair_without_a_verdict(tmp_path, monkeypatch):
    from runners.analysis import compare as comparing
    from runners.cli import analyze

    comparison = compare_runs(Store([]), [_run(1, 100.0, start=1)], [_run(2, 70.0, start=2)], 0.02, "a", "")
    monkeypatch.setattr(analyze.comparing, "compare", lambda *args: comparison)
    monkeypatch.setattr(analyze, "Store", lambda *args: Store([]))
    monkeypatch.setattr(analyze, "_record", lambda *args: [])
    assert comparing.Comparison.regressions.fget(comparison) == []
    assert analyze.main(["regressions", "baseline=label=a", f"results_dir={tmp_path}"]) == 0


def test_start_up_and_host_memory_are_compared_only_between_workers_started_alike():
    def run(n, backend, start, memory_source, memory):
        made = _run(n, tags={"backend": backend, "worker_start": start, "memory_source": memory_source})
        made.metrics.update(time_to_first_step_s=0.2 if start == "forked" else 5.0, memory_peak_mb=memory)
        return made

    sides = frozenset({"backend"})
    # CPU runs: host peaks. A forked native and a fresh vGPU run: neither figure is the layer's.
    host = "rusage.ru_maxrss"
    c = compare_runs(Store([]), [run(1, "cpu", "forked", host, 300)], [run(2, "vgpu", "fresh", host, 420)], 0.02,
                     sides=sides)  # fmt: skip
    [apart] = c.rows
    assert apart.startup_ratio != apart.startup_ratio and apart.memory_diff_mb != apart.memory_diff_mb  # nan
    [line] = c.started_apart
    assert line.startswith("bert/infer/fp32/8/base") and line.endswith(": baseline forked, candidate fresh")
    buffer = io.StringIO()
    _print(c, out=Console(file=buffer, width=400))
    assert f"start-up and host memory not compared: {line}" in buffer.getvalue()
    # Device memory does not depend on how the worker started; start-up still does.
    gpu = "torch.cuda.max_memory_allocated"
    [device] = compare_runs(Store([]), [run(1, "native", "forked", gpu, 300)], [run(2, "vgpu", "fresh", gpu, 420)],
                            0.02, sides=sides).rows  # fmt: skip
    assert device.startup_ratio != device.startup_ratio and device.memory_diff_mb == 120
    # Started alike (fork_server=false on both sides, or runs from before fork servers): compared.
    alike = compare_runs(Store([]), [run(1, "cpu", "fresh", host, 300)], [run(2, "vgpu", "fresh", host, 420)], 0.02,
                         sides=sides)  # fmt: skip
    assert alike.rows[0].startup_ratio == 1.0 and alike.rows[0].memory_diff_mb == 120 and not alike.started_apart
