"""Bad input through the real command line: one line, exit 2, no traceback, nothing run."""

import pytest

from conftest import TINY, has_gpu, logged_runs, run_dirs

CASES = {
    "unknown model": (["model=bertt"], "unknown model 'bertt'. Did you mean 'bert'?"),
    "unknown backend": (["backend=nativ"], "unknown backend 'nativ'. Did you mean 'native'?"),
    "unknown workload": (["workload=trian"], "unknown workload 'trian'. Did you mean 'train'?"),
    "zero batch": (["workload.batch_size=0"], "workload.batch_size must be >= 1, got 0"),
    "unknown precision": (["workload.precision=fp8"], "invalid value for workload.precision"),
    "not a number": (["workload.batch_size=many"], "invalid value for workload.batch_size"),
    "unknown key": (["workload.batchsize=2"], "unknown key 'workload.batchsize'. Did you mean 'workload.batch_size'?"),
    "malformed": (["workload.batch_size=[1,"], "malformed override"),
    "unknown size": (["model.size=huge"], "unknown size of model 'bert' 'huge'"),
    "too long input": (["workload.seq_len=4096"], "exceeds bert's maximum of 512"),
    "sweep without multirun": (["model=bert,resnet50"], "make sweep"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_clear_line_and_exit_2(cli, results_dir, name):
    args, expected = CASES[name]
    done = cli(*args, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert expected in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert not run_dirs(results_dir) and not logged_runs(results_dir)


@pytest.mark.skipif(has_gpu(), reason="this machine has a GPU")
def test_native_without_a_gpu_says_what_works_here(cli, results_dir):
    done = cli("backend=native", timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: backend 'native' needs an NVIDIA GPU, but no NVIDIA driver found "
        "(NVML could not be initialized). Valid on this machine: cpu, auto"
    )


def test_a_bad_job_in_a_sweep_stops_it_before_anything_runs(cli, results_dir):
    done = cli("--multirun", "model=dummy,bertt", *TINY, timeout=120)
    assert done.returncode == 2 and "unknown model 'bertt'" in done.stderr
    assert not run_dirs(results_dir)


def test_bad_input_never_touches_recorded_runs(cli, results_dir):
    assert cli("model=dummy", "backend=cpu", *TINY).returncode == 0
    before = (results_dir / "mlflow.db").read_bytes()
    assert cli("model=nope").returncode == 2
    assert (results_dir / "mlflow.db").read_bytes() == before and len(run_dirs(results_dir)) == 1
