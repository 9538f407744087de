"""`make compare` pairs serve capacity searches like with like and divides their max rates."""

from types import SimpleNamespace

from runners.analysis.capacity import capacity_rows


class FakeStore:
    """Group runs (tags.kind = capacity) and one probe of each, as MLflow returns them."""

    def __init__(self, searches, lower_bounds=()):
        self.groups, self.probes = [], {}
        for i, (backend, rate, slo) in enumerate(searches):
            run_id = f"g{i}"
            tags = {"kind": "capacity", "backend": backend, "model": "bert", "model_size": "tiny", "group": run_id}
            self.groups.append(
                SimpleNamespace(
                    info=SimpleNamespace(run_id=run_id),
                    data=SimpleNamespace(
                        tags=tags,
                        metrics={"max_rate_at_slo": rate, "max_rate_at_slo_is_lower_bound": float(i in lower_bounds)},
                    ),
                )
            )
            params = {"serve.slo.p99_ms": slo, "serve.max_batch_size": "8", "serve.rate": str(rate / 2 + i)}
            probe_tags = {**tags, "kind": "run", "workload": "serve", "run_id": f"p{i}"}
            self.probes[run_id] = [
                SimpleNamespace(
                    info=SimpleNamespace(run_id=f"p{i}"), data=SimpleNamespace(tags=probe_tags, params=params)
                )
            ]

    def search(self, filter_string):
        if "parentRunId" in filter_string:
            return self.probes[filter_string.split("'")[1]]
        backend = filter_string.split("tags.backend = '")[1].split("'")[0]
        return [g for g in self.groups if g.data.tags["backend"] == backend]


def test_max_rate_at_slo_is_paired_on_the_slo_and_divided():
    store = FakeStore([("native", 200.0, "50"), ("vgpu", 150.0, "50"), ("vgpu", 90.0, "20"), ("native", 100.0, "50")])
    [row] = capacity_rows(store, {"backend": "native"}, {"backend": "vgpu"})
    assert (row.baseline_rate, row.candidate_rate) == (200.0, 150.0)  # the newest of each side, same SLO
    assert row.ratio == 0.75 and "p99_ms=50" in row.settings
    only_20 = capacity_rows(store, {"backend": "native"}, {"backend": "vgpu", "serve.slo.p99_ms": "20"})
    assert only_20 == []  # the baseline has no search at that SLO


def test_a_lower_bound_is_never_compared_as_if_measured():
    searches = [("native", 200.0, "50"), ("vgpu", 150.0, "50")]
    [measured] = capacity_rows(FakeStore(searches), {"backend": "native"}, {"backend": "vgpu"})
    assert measured.ratio_text == "0.750" and measured.candidate_text == "150.00"
    # The candidate's search never found a failing rate: it is at least 150, the ratio at least 0.75.
    [bound] = capacity_rows(FakeStore(searches, lower_bounds={1}), {"backend": "native"}, {"backend": "vgpu"})
    assert bound.candidate_text == "at least 150.00" and bound.ratio_text == ">= 0.750"
    [upper] = capacity_rows(FakeStore(searches, lower_bounds={0}), {"backend": "native"}, {"backend": "vgpu"})
    assert upper.ratio_text == "<= 0.750"
    [neither] = capacity_rows(FakeStore(searches, lower_bounds={0, 1}), {"backend": "native"}, {"backend": "vgpu"})
    assert neither.ratio_text == "unknown: both are lower bounds" and neither.ratio != neither.ratio
