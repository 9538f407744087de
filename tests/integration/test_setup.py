"""Setup on a host that already has its framework, offline; the zoo as a library."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conftest import REPO


def test_transformers_imports_first_in_a_users_script():
    # torchvision from the registry is built for CUDA torch; without the setup's hook this
    # fails on a CPU-only torch unless `zoo` was imported first.
    script = "from transformers import BertModel; print('ok')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def _closure(name: str) -> set[str]:
    """`name` and every distribution it requires, as installed here."""
    seen, todo = set(), [name]
    while todo:
        dist = importlib.metadata.distribution(todo.pop())
        key = dist.metadata["Name"].lower()
        if key in seen:
            continue
        seen.add(key)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _stand_in_host_python(tmp_path: Path) -> Path:
    """A Python whose own site packages hold this project's torch and torchvision (and what
    they need) and nothing of the suite: a preinstalled framework, as in an NGC image."""
    site = tmp_path / "preinstalled"
    site.mkdir()
    for name in _closure("torch") | _closure("torchvision"):
        dist = importlib.metadata.distribution(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists() and top not in ("..", "bin"):
                (site / top).symlink_to(source)
    host = tmp_path / "host"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(host)], check=True)
    purelib = subprocess.run(
        [str(host / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "preinstalled.pth").write_text(f"{site}\n")
    return host / "bin/python"


def _copy_of_the_checkout(dest: Path) -> Path:
    """What a fresh clone holds: tracked files and new ones git does not ignore."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


@pytest.mark.slow
def test_offline_setup_reuses_the_hosts_framework(tmp_path):
    host_python = _stand_in_host_python(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))}
    env["PIP_CACHE_DIR"] = str(tmp_path / "pip-cache")  # nothing written outside the test's folder
    # the wheelhouse comes from a connected machine (this one); the install then uses no index
    wheels = tmp_path / "wheels"
    made = subprocess.run(
        ["make", "-s", "wheelhouse", f"WHEELHOUSE_DIR={wheels}", f"PYTHON={sys._base_executable}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    assert not list(wheels.glob("torch-*")) and list(wheels.glob("hydra_core-*"))
    assert list(wheels.glob("transformers-*"))  # the zoo's language models: images often lack it

    checkout = _copy_of_the_checkout(tmp_path / "checkout")
    offline = {**env, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "1"}
    done = subprocess.run(
        ["make", "setup", f"PYTHON={host_python}", f"WHEELHOUSE={wheels}", "FRAMEWORK=host"],
        cwd=checkout, env=offline, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "using the framework" in done.stdout and "torch 2.13.0" in done.stdout

    venv_python = checkout / ".venv/bin/python"
    own = subprocess.run(
        [str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert not list(Path(own).glob("torch*")), "setup installed a torch of its own"
    assert list(Path(own).glob("hydra_core-*.dist-info"))

    # a real run in the new environment uses the preinstalled torch, and its result says so;
    # bert: transformers from the wheelhouse, which imports the preinstalled torchvision too
    results = tmp_path / "results"
    run = subprocess.run(
        [str(venv_python), "-m", "runners.cli.bench", "model=bert", "model.size=tiny", "tracking=none",
         "workload.batch_size=1", "workload.seq_len=16", "workload.min_steps=1", "workload.min_duration_s=0",
         "workload.warmup_steps=1", "backend=cpu", "backend.threads=1", f"results_dir={results}"],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    sys.path.insert(0, str(REPO))
    from runners.contracts import RESULT_FILE, Result

    [result_file] = (results / "runs").glob(f"*/{RESULT_FILE}")
    result = Result.load(result_file)
    assert result.ok, result.error
    assert result.environment.package_sources["torch"] == "host"
    assert result.environment.package_sources["nvidia-ml-py"] == "venv"
    assert result.environment.package_sources["transformers"] == "venv"


def test_setup_refuses_a_host_framework_that_is_not_there(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    done = subprocess.run(
        ["make", "-s", "setup", f"PYTHON={bare}/bin/python", "FRAMEWORK=host", f"VENV={tmp_path}/venv"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "FRAMEWORK=host, but" in done.stdout and "Valid:" in done.stdout
    assert not (tmp_path / "venv").exists()


def test_host_framework_probe_tells_cuda_builds_from_cpu_builds(tmp_path):
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch/__init__.py").write_text("__version__ = '2.11.0+cu130'\nclass version:\n    cuda = '13.0'\n")
    probe = [sys._base_executable, str(REPO / "runners/cli/host_framework.py")]
    env = {**os.environ, "PYTHONPATH": str(fake)}
    cuda = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
    assert cuda.stdout.strip() == "torch 2.11.0+cu130 (CUDA 13.0)"
    (fake / "torch/__init__.py").write_text("__version__ = '2.13.0+cpu'\nclass version:\n    cuda = None\n")
    assert subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60).stdout == ""
    assert "CPU build" in subprocess.run([*probe, "--any"], env=env, capture_output=True, text=True).stdout
