import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import runners  # noqa: F401  (as in every suite process: MLflow's telemetry off before any test imports it)

REPO = Path(__file__).resolve().parents[1]

# Microbenchmark figures of a bare GPU and of a remoting layer, for the overhead estimate.
MICRO_NATIVE = {
    "launch_us": 5.0,
    "launch_sync_us": 15.0,
    "malloc_us": 100.0,
    "free_us": 50.0,
    "h2d_pageable_1m_gbps": 10.0,
    "d2h_pageable_1m_gbps": 10.0,
}
MICRO_REMOTE = {
    "launch_us": 25.0,
    "launch_sync_us": 85.0,
    "malloc_us": 300.0,
    "free_us": 150.0,
    "h2d_pageable_1m_gbps": 5.0,
    "d2h_pageable_1m_gbps": 5.0,
}

# Small enough for a 2-core CI machine; every shipped model takes these. One CPU thread per
# worker: two tests run at once on two cores, and oversubscribed OpenMP threads spin-waiting
# at each parallel region's barrier made small depthwise-convolution steps 50x slower. Windows
# of 2 steps keep training runs at the two measured steps of the rest.
TINY = [
    "backend.threads=1",
    "workload.sync_every=2",
    "model.size=tiny",
    "workload.batch_size=2",
    "workload.seq_len=16",
    "workload.image_size=32",
    "workload.warmup_steps=1",
    "workload.min_steps=2",
    "workload.min_duration_s=0",
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def headless_chromium(profile: Path) -> list[str]:
    """Headless Chromium with a fresh profile in `profile` (a test's own folder: no saved
    state, no history, nothing left in the system's temporary folder) that reaches nothing on
    its own (no sync, updates or background requests); the page's URL and the output
    (--dump-dom, --screenshot=...) follow."""
    return [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]


def has_gpu() -> bool:
    from runners.nvml import visible_gpus

    return bool(visible_gpus()[0])


@pytest.fixture(autouse=True, scope="session")
def users_world_stays_alone(tmp_path_factory):
    """Whatever the user's environment holds (their own MLflow store, their results folder,
    a shared weight cache, their temporary folder),
    no test and no command a test starts reaches it: each test names its own store and
    folder, and anything that forgets lands in this session's temporary folder."""
    keys = ("MLFLOW_TRACKING_URI", "VGPU_BENCH_RESULTS", "VGPU_BENCH_WEIGHT_CACHE", "XDG_RUNTIME_DIR", "TMPDIR")
    saved = {k: os.environ.get(k) for k in keys}
    # The MPS daemon's pipes go under $XDG_RUNTIME_DIR: a short folder of this session's own
    # (a socket path holds 107 bytes), removed with the session's temporary files.
    runtime_dir = tempfile.mkdtemp(prefix="vb-run-")
    os.environ["XDG_RUNTIME_DIR"] = runtime_dir
    # What the libraries of this process and of the commands it starts leave in the temporary
    # folder (caches, generated sources) stays among the session's own files.
    saved_tempdir = tempfile.tempdir
    tempfile.tempdir = os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("tmp"))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("VGPU_BENCH_WEIGHT_CACHE", None)  # a shared weight cache: each run then keeps its own
    os.environ["VGPU_BENCH_RESULTS"] = str(tmp_path_factory.mktemp("unclaimed-results"))
    yield
    shutil.rmtree(runtime_dir, ignore_errors=True)
    tempfile.tempdir = saved_tempdir
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True, scope="session")
def repo_stays_clean():
    """Tests write under their own temporary results dir: an MLflow experiment made without
    the suite's artifact location once left artifacts in ./mlruns, and they got committed."""

    def entries() -> set[str]:
        found = {str(p.relative_to(REPO)) for d in (REPO, REPO / "results") for p in d.iterdir()}
        changed = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
        return found | {f"changed: {line}" for line in changed.stdout.splitlines()}  # files edited in place too

    before = entries()
    yield
    strays = entries() - before - {".pytest_cache", ".hypothesis"}
    assert not strays, f"the tests wrote into the repository: {sorted(strays)}"


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An empty MLflow sqlite store, its schema migrated once per session: a new store
    costs about 5 s of migrations here, and most tests make one."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "artifacts")).engine.dispose()
    return path


def pytest_collection_modifyitems(items):
    """The long tests (marked slow) first: the workers take them while the short ones fill in
    behind, instead of one worker running a long test alone at the end. Before them, the tests
    that convert with MNN in their own process (marked mnn_in_process): MNN's converter aborts
    in a process that loaded TensorFlow (two protobuf copies), and a test process imports
    TensorFlow for the in-process Keras tests. xdist hands each worker its tests in this order."""
    items.sort(
        key=lambda item: (item.get_closest_marker("mnn_in_process") is None, item.get_closest_marker("slow") is None)
    )


@pytest.fixture
def results_dir(tmp_path, store_template):
    """The test's own results folder, with an empty store of its own."""
    path = tmp_path / "results"
    path.mkdir()
    shutil.copyfile(store_template, path / "mlflow.db")
    return path


def logged_runs(results_dir: Path) -> list:
    """Every run in the test's store (none: nothing was recorded)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.fixture
def short_tmpdir():
    """A TMPDIR for a command whose leftovers a test looks for: empty, and short, so the runs'
    own temporary folders go inside it (runners/parent/launch.py, temporary_base)."""
    path = Path(tempfile.mkdtemp(prefix="vbt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cli(results_dir):
    """Run `python -m runners.cli.bench` as a user would, against a temporary results dir."""

    def run(*args: str, **options) -> subprocess.CompletedProcess:
        return run_command(results_dir, "bench", *args, **options)

    return run


def run_command(
    results_dir: Path,
    command: str,
    *args: str,
    timeout: float = 600,
    env: dict | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """`python -m runners.cli.<command> ...` as a user runs it, against the test's results folder
    and its own store (the user's MLFLOW_TRACKING_URI is out of the session), unless `env` says else."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", f"runners.cli.{command}", *args],
        cwd=REPO,
        env={**os.environ, "VGPU_BENCH_RESULTS": str(results_dir), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_dirs(results_dir: Path) -> list[Path]:
    return sorted((results_dir / "runs").glob("*")) if (results_dir / "runs").exists() else []


def results_of(results_dir: Path) -> list:
    """Every result file under results_dir/runs, as typed Results."""
    from runners.contracts import RESULT_FILE, Result

    return [Result.load(d / RESULT_FILE) for d in run_dirs(results_dir)]


def groups_of(results_dir: Path) -> list:
    """Every group record under results_dir/groups."""
    from runners.contracts import GroupRecord

    return [GroupRecord.load(p) for p in sorted((results_dir / "groups").glob("*.json"))]


@pytest.fixture
def fake_bin(tmp_path):
    path = tmp_path / "bin"
    path.mkdir()

    def install(name: str, script: str) -> Path:
        exe = path / name
        exe.write_text(script)
        exe.chmod(0o755)
        return exe

    install.env = {"PATH": f"{path}{os.pathsep}{os.environ['PATH']}", "FAKE_MPS_LOG": str(tmp_path / "mps.log")}
    install.log = tmp_path / "mps.log"
    return install
