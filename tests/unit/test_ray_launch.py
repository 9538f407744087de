"""What each sweep job asks a Ray cluster for, and the refusals that come before anything runs."""

import pytest

from runners.backends import create
from runners.backends.hami import HamiConfig
from runners.backends.mps import MpsConfig
from runners.backends.vgpu import VgpuConfig
from runners.config import BackendConfig, BenchConfig
from runners.errors import UsageError
from runners.parent import ray_launch
from runners.parent.ray_launch import check_feasible, cluster_address, job_options
from runners.scenarios.train_ddp import TrainDdpConfig


def options(tmp_path, backend, **config):
    bench = BenchConfig(backend=backend, **config)
    return job_options(bench, create(backend, tmp_path))


@pytest.mark.parametrize(
    "backend, asked",
    [
        (BackendConfig(name="cpu", threads=3), {"num_cpus": 3, "num_gpus": 0}),
        (BackendConfig(name="cpu"), {"num_cpus": 1, "num_gpus": 0}),  # the framework's default: one CPU booked
        (BackendConfig(name="native", threads=2), {"num_cpus": 2, "num_gpus": 1.0}),
        (MpsConfig(name="mps", sm_percent=25), {"num_cpus": 1, "num_gpus": 0.25}),
        (HamiConfig(name="hami", sm_limit=50), {"num_cpus": 1, "num_gpus": 0.5}),
        (HamiConfig(name="hami"), {"num_cpus": 1, "num_gpus": 1.0}),  # a memory quota alone: the whole SMs
        (VgpuConfig(name="vgpu", vgpus=2), {"num_cpus": 1, "num_gpus": 0, "resources": {"vgpu": 2.0}}),
        (VgpuConfig(name="vgpu", compute_share=50), {"num_cpus": 1, "num_gpus": 0, "resources": {"vgpu": 0.5}}),
    ],
)
def test_a_job_asks_for_its_threads_and_its_quota_of_a_gpu(tmp_path, backend, asked):
    assert options(tmp_path, backend) == asked


def test_ranks_and_tenants_multiply_what_a_job_asks(tmp_path):
    ddp = TrainDdpConfig(kind="train_ddp", processes=3)
    assert options(tmp_path, BackendConfig(name="native"), workload=ddp) == {"num_cpus": 3, "num_gpus": 3.0}
    assert options(tmp_path, BackendConfig(name="cpu", threads=2), workload=ddp)["num_cpus"] == 6
    # Tenants share one device: their shares add up, to the whole GPU at most.
    assert options(tmp_path, MpsConfig(name="mps", sm_percent=25), tenants=2)["num_gpus"] == 0.5
    assert options(tmp_path, MpsConfig(name="mps", sm_percent=50), tenants=4)["num_gpus"] == 1.0
    # Ray takes a fraction of one device or whole devices: 3 vGPUs at half a GPU each book 2.
    assert options(tmp_path, VgpuConfig(name="vgpu", vgpus=3, compute_share=50))["resources"] == {"vgpu": 2.0}


NODES = [
    {"Alive": True, "Resources": {"CPU": 8.0, "memory": 1e9}},
    {"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}},
    {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},  # a dead node holds nothing
]


def test_a_job_that_no_live_node_can_hold_is_refused_before_anything_runs():
    check_feasible({"CPU": 8.0}, NODES, "job #0")
    check_feasible({"CPU": 2.0, "GPU": 0.5}, NODES, "job #0")
    for asked in ({"CPU": 8.0, "GPU": 1.0}, {"GPU": 2.0}, {"vgpu": 1.0}):
        with pytest.raises(UsageError, match=r"job #3 asks Ray for .* no node of the cluster has that much"):
            check_feasible(asked, NODES, "job #3")


def test_the_cluster_is_found_as_ray_finds_it(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert cluster_address("10.0.0.5:6379") == "10.0.0.5:6379"
    with pytest.raises(UsageError, match="no Ray cluster found .*`ray start --head`"):
        cluster_address("auto")
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:6390\n")
    assert cluster_address("auto") == cluster_address(None) == "127.0.0.1:6390"
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert cluster_address("auto") == "head:6379"


def test_an_unreachable_head_is_one_line_in_seconds():
    with pytest.raises(UsageError, match=r"the Ray head at 127.0.0.1:1 does not answer"):
        ray_launch._reachable("127.0.0.1:1")
    assert ray_launch.ipaddress_is_loopback("127.0.0.1") and ray_launch.ipaddress_is_loopback("localhost")
    assert not ray_launch.ipaddress_is_loopback("10.1.2.3") and not ray_launch.ipaddress_is_loopback("head")


def test_serve_jobs_ask_for_every_server_and_load_generator_they_run(tmp_path):
    from runners.config import Aggressor, Search, ServeConfig, SloConfig, WorkloadConfig

    serve = WorkloadConfig(kind="serve")
    slo = SloConfig(p99_ms=50)
    native, mps = BackendConfig(name="native"), MpsConfig(name="mps", sm_percent=25)
    plain = options(tmp_path, native, workload=serve, serve=ServeConfig(generators=2))
    assert plain == {"num_cpus": 1 + 2, "num_gpus": 1.0}  # the server and its two generators
    density = ServeConfig(search=Search.density, search_max_runs=4, slo=slo)
    assert options(tmp_path, mps, workload=serve, serve=density) == {"num_cpus": 4 + 4, "num_gpus": 1.0}
    victim = ServeConfig(aggressor=Aggressor.train)
    assert options(tmp_path, mps, workload=serve, serve=victim) == {"num_cpus": 2 + 2, "num_gpus": 0.5}
