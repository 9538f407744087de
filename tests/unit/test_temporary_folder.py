"""A run's own temporary folder (runners/parent/launch.py): where it goes, and that it goes."""

import socket
import tempfile

from runners.parent.launch import SOCKET_PATH_MAX, temporary_base, temporary_folder


def _deepest_socket(folder) -> str:
    """The path multiprocessing gives a socket under TMPDIR=folder (a DataLoader worker's)."""
    return f"{folder}/pymp-XXXXXXXX/listener-XXXXXXXX"


def test_the_folder_is_in_the_users_temporary_folder_and_removed_after(monkeypatch, tmp_path):
    base = tmp_path.parent / "t"  # short enough: pytest's own folders are not always
    base.mkdir(exist_ok=True)
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    with temporary_folder() as folder:
        assert folder.parent == base and folder.is_dir()
        (folder / "left-by-a-library").write_text("")
    assert not folder.exists()


def test_a_temporary_folder_too_deep_for_a_socket_falls_back_to_tmp(monkeypatch, tmp_path):
    deep = tmp_path / ("d" * 60)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    assert temporary_base() == "/tmp"
    with temporary_folder() as folder:
        assert len(_deepest_socket(folder)) <= SOCKET_PATH_MAX
        with socket.socket(socket.AF_UNIX) as probe:  # the length the kernel takes
            (folder / "pymp-XXXXXXXX").mkdir()
            probe.bind(_deepest_socket(folder))
