"""Where the weight cache lives: each results folder its own, or one folder shared by
several (gpu-check's items, each with a results folder of its own)."""

from pathlib import Path

from runners.cli import gpu_check
from runners.worker import weight_cache


def test_each_results_folder_has_its_own_cache_unless_one_is_shared(tmp_path, monkeypatch):
    monkeypatch.delenv(weight_cache.DIR_VARIABLE, raising=False)
    assert weight_cache.folder(str(tmp_path)) == tmp_path.resolve() / ".cache" / "weights"
    monkeypatch.setenv(weight_cache.DIR_VARIABLE, str(tmp_path / "shared"))
    assert weight_cache.folder(str(tmp_path / "elsewhere")) == tmp_path / "shared"


def test_gpu_check_items_share_one_cache_beside_their_folders(tmp_path, monkeypatch):
    monkeypatch.delenv(weight_cache.DIR_VARIABLE, raising=False)
    first, second = (tmp_path / "gpu-check" / "stamp" / name for name in ("native", "compile"))
    shared = {gpu_check._shared_cache(work)[weight_cache.DIR_VARIABLE] for work in (first, second)}
    assert shared == {str(tmp_path / "gpu-check" / "stamp" / ".cache" / "weights")}
    monkeypatch.setenv(weight_cache.DIR_VARIABLE, "/somewhere/the/user/chose")
    assert gpu_check._shared_cache(first)[weight_cache.DIR_VARIABLE] == "/somewhere/the/user/chose"
    assert Path(first).exists() is False  # nothing is created by asking
