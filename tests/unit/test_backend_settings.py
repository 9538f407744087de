"""What a backend writes for its layer, and what it refuses, without running anything."""

from pathlib import Path

import pytest

from runners.backends import Seen, create
from runners.backends import vgpu as vgpu_module
from runners.backends.hami import REGION_SIZE, SHARED_REGION, HamiConfig, hami_size_mib
from runners.backends.local import NativeBackend, same_device
from runners.backends.mig import MigConfig
from runners.backends.vgpu import VgpuConfig, cuda_of_runtime
from runners.errors import UsageError


@pytest.mark.parametrize(
    "text, mib", [("4g", 4096), ("4G", 4096), ("4096m", 4096), ("512M", 512), ("4194304k", 4096), ("1g", 1024)]
)
def test_hami_quotas_are_written_in_hami_s_own_syntax(tmp_path, text, mib):
    assert hami_size_mib(text) == mib
    backend = create(HamiConfig(name="hami", library="/x/libvgpu.so", memory_limit=text), tmp_path)
    assert backend.environment()["CUDA_DEVICE_MEMORY_LIMIT"] == f"{mib}m"  # HAMi-core: <N>m is N MiB
    assert backend.memory_quota_mb() == mib


@pytest.mark.parametrize("text", ["1024", "1.5g", "4gb", "4 GiB", "0m", "512k", "4t", "", "-1g"])
def test_hami_spellings_it_would_misread_are_refused(text):
    with pytest.raises(ValueError, match="whole number of MiB written <integer><k|m|g>"):
        HamiConfig(name="hami", memory_limit=text)


def test_vgpu_sets_no_slice_unless_asked_and_writes_the_compute_share(tmp_path):
    default = create(VgpuConfig(name="vgpu"), tmp_path)
    assert "ORION_GMEM" not in default.environment() and default.compute_share() is None
    shared = create(VgpuConfig(name="vgpu", compute_share=50, compute_share_variable="ORION_RATIO"), tmp_path)
    assert shared.environment()["ORION_RATIO"] == "50" and shared.describe()["compute_share"] == 50


@pytest.mark.parametrize(
    "name, version",
    [
        ("libcudart.so.12", (12, 0)),
        ("libcudart.so.10.2", (10, 2)),
        ("libcudart.so.12.4.127", (12, 4)),
        ("libcuda.so.1", None),
    ],
)
def test_the_client_runtime_version_is_read_from_its_file_name(name, version):
    assert cuda_of_runtime(Path(name)) == version


def test_a_client_runtime_older_than_the_framework_s_cuda_is_refused(tmp_path, monkeypatch):
    (tmp_path / "libcudart.so.10.2").write_bytes(b"")
    backend = create(VgpuConfig(name="vgpu", client_dir=str(tmp_path)), tmp_path)
    monkeypatch.setattr(vgpu_module, "torch_cuda", lambda: (12, 8))
    with pytest.raises(UsageError, match="implements CUDA 10.2, and torch was built for CUDA 12.8"):
        backend.check_framework("pytorch")
    backend.check_framework("python")  # a framework-free workload loads no runtime
    monkeypatch.setattr(vgpu_module, "torch_cuda", lambda: (10, 2))
    backend.check_framework("pytorch")
    monkeypatch.setattr(vgpu_module, "torch_cuda", lambda: (0, 0))
    with pytest.raises(UsageError, match="CPU build"):
        backend.check_framework("pytorch")


def _seen(**kw):
    return Seen(env=kw.pop("env", {}), expected_env=kw.pop("expected", {}), mapped=kw.pop("mapped", []), **kw)


def test_a_variable_the_worker_did_not_get_fails_the_base_check(tmp_path):
    backend = create(HamiConfig(name="hami", library="/x/libvgpu.so"), tmp_path)
    check = {c.name: c for c in backend.engagement(_seen(expected={"LD_PRELOAD": "/x/libvgpu.so"}))}[
        "environment_applied"
    ]
    assert not check.passed and "LD_PRELOAD=None" in check.detail


def test_a_gpu_backend_whose_framework_never_touched_the_device_is_not_engaged(tmp_path):
    backend = create(MigConfig(name="mig", instance="MIG-1111-aaaa"), tmp_path)
    checks = {c.name: c for c in backend.engagement(_seen(framework_loaded=True))}
    assert not checks["device_used"].passed
    got = _seen(
        framework_loaded=True,
        env={"CUDA_VISIBLE_DEVICES": "MIG-1111-aaaa"},
        device={"name": "NVIDIA A100 MIG 3g.40gb", "uuid": "2222-bbbb"},
    )
    assert not {c.name: c for c in backend.engagement(got)}["requested_instance"].passed
    assert same_device("1111-AAAA", "MIG-1111-aaaa") and not same_device("", "MIG-1111-aaaa")


def test_a_hami_quota_the_device_does_not_report_is_not_engaged(tmp_path):
    backend = create(HamiConfig(name="hami", library="/x/libvgpu.so", memory_limit="4g"), tmp_path)
    seen = _seen(
        mapped=["/x/libvgpu.so"],
        device={"name": "H200", "memory_total_seen_mb": 143771.0},
        env={"CUDA_DEVICE_MEMORY_SHARED_CACHE": str(tmp_path / "r" / SHARED_REGION)},
        run_dir=tmp_path / "r",
    )
    checks = {c.name: c for c in backend.engagement(seen)}
    assert checks["library_mapped"].passed
    assert not checks["own_shared_region"].passed and "created no region" in checks["own_shared_region"].detail
    assert (
        not checks["quota_is_total"].passed
        and "143771 MiB against the quota 4096 MiB" in checks["quota_is_total"].detail
    )


def test_a_region_file_that_is_not_hami_core_s_is_not_engaged(tmp_path):
    backend = create(HamiConfig(name="hami", library="/x/libvgpu.so"), tmp_path)
    region = tmp_path / "r" / SHARED_REGION
    region.parent.mkdir()
    seen = _seen(env={"CUDA_DEVICE_MEMORY_SHARED_CACHE": str(region)}, run_dir=tmp_path / "r", pid=1)
    region.write_bytes(b"\0" * 100)  # created by something else: too short
    assert "not a HAMi-core region" in backend.own_region(seen).detail
    region.write_bytes(b"\0" * (REGION_SIZE + 1))  # HAMi-core's size, never filled in
    assert "initialized_flag 0" in backend.own_region(seen).detail and not backend.own_region(seen).passed
    elsewhere = _seen(env={"CUDA_DEVICE_MEMORY_SHARED_CACHE": "/tmp/cudevshr.cache"}, run_dir=tmp_path / "r")
    assert "not this run's" in backend.own_region(elsewhere).detail  # HAMi-core's default, shared by every process


def test_a_device_of_which_nothing_could_be_read_is_not_a_device_used(tmp_path):
    unread = {"source": "onnxruntime CUDAExecutionProvider", "name": None, "uuid": None, "error": "no runtime"}
    hami = create(HamiConfig(name="hami", library="/x/libvgpu.so", memory_limit="4g"), tmp_path)
    checks = {c.name: c for c in hami.engagement(_seen(framework_loaded=True, device=unread))}
    assert not checks["quota_is_total"].passed and "could not be read" in checks["quota_is_total"].detail
    native = {c.name: c for c in create(NativeBackend.config_class(name="native"), tmp_path).engagement(
        _seen(framework_loaded=True, device=unread)
    )}  # fmt: skip
    assert not native["device_used"].passed and "no runtime" in native["device_used"].detail


def test_a_native_run_on_another_gpu_than_the_one_made_visible_is_not_engaged(tmp_path):
    backend = create(NativeBackend.config_class(name="native"), tmp_path)
    visible = {"CUDA_VISIBLE_DEVICES": "GPU-aaaa-1111"}
    other = _seen(framework_loaded=True, env=visible, device={"name": "H200", "uuid": "GPU-bbbb-2222"})
    assert not {c.name: c for c in backend.engagement(other)}["visible_device"].passed
    same = _seen(framework_loaded=True, env=visible, device={"name": "H200", "uuid": "aaaa-1111"})
    assert {c.name: c for c in backend.engagement(same)}["visible_device"].passed


def test_the_environment_alone_never_makes_a_run_engaged(tmp_path, monkeypatch):
    from runners.backends import Backend
    from runners.backends.local import CpuBackend
    from runners.contracts import Job
    from runners.worker.evidence import collect

    job = Job("r", "r", str(tmp_path), "h", {"backend": {"name": "cpu"}}, None, {"name": "cpu", "env": {}}, {})
    assert collect(job).engaged  # the CPU backend observes that no device was initialized
    monkeypatch.setattr(CpuBackend, "engagement", Backend.engagement)  # a backend that only compares variables
    evidence = collect(job)
    assert not evidence.engaged and "layer_observed: only the environment was compared" in evidence.verdict
