"""A run's own temporary folder (runners/parent/temp_folders.py): where it goes, and that it goes."""

import socket
import tempfile

from runners.parent.temp_folders import SOCKET_PATH_MAX, temporary_base, temporary_folder


def _deepest_socket(folder) -> str:
    """The path multiprocessing gives a socket under TMPDIR=folder (a DataLoader worker's)."""
    return f"{folder}/pymp-XXXXXXXX/listener-XXXXXXXX"


def _bind(folder) -> None:
    """Bind that socket: the kernel's own verdict on its length."""
    (folder / "pymp-XXXXXXXX").mkdir()
    with socket.socket(socket.AF_UNIX) as probe:
        probe.bind(_deepest_socket(folder))


def _base_of_length(tmp_path, length: int):
    """A folder whose path has exactly `length` bytes (pytest's own are of any length)."""
    base = tmp_path.parent / "b"
    base = base.with_name("b" * (length - len(str(base.parent)) - 1))
    base.mkdir(exist_ok=True)
    assert len(str(base)) == length
    return base


def test_the_folder_is_in_the_users_temporary_folder_and_removed_after(monkeypatch, tmp_path):
    base = _base_of_length(tmp_path, 63)  # the longest under which a run's sockets still fit
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    assert temporary_base() == str(base)
    with temporary_folder() as folder:
        assert folder.parent == base and len(_deepest_socket(folder)) == SOCKET_PATH_MAX
        _bind(folder)
        (folder / "left-by-a-library").write_text("")
    assert not folder.exists()


def test_a_temporary_folder_too_deep_for_a_socket_falls_back_to_tmp(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(_base_of_length(tmp_path, 64)))
    assert temporary_base() == "/tmp"
    with temporary_folder() as folder:
        assert folder.parent.as_posix() == "/tmp"
        _bind(folder)
