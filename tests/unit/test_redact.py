from runners.backends import create
from runners.config import BackendConfig
from runners.redact import REDACTED, redact_env, redact_value


def test_secret_looking_names_are_redacted():
    env = {
        "HF_TOKEN": "abc",
        "AWS_SECRET_ACCESS_KEY": "s",
        "DB_PASSWORD": "p",
        "API_KEY": "k",
        "ORION_VGPU": "1",
        "KEYBOARD": "us",
        "CUDA_DEVICE_MEMORY_LIMIT": "4g",
    }
    out = redact_env(env)
    assert {k for k, v in out.items() if v == REDACTED} == {
        "HF_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "API_KEY",
    }
    assert out["ORION_VGPU"] == "1" and out["KEYBOARD"] == "us"


def test_passwords_inside_uris_are_redacted():
    assert redact_value("postgresql://bench:hunter2@db:5432/mlflow") == "postgresql://bench:***@db:5432/mlflow"
    assert redact_value("http://host:5000") == "http://host:5000"


def test_a_backend_records_its_variables_redacted(tmp_path):
    backend = create(BackendConfig(name="cpu", threads=1, extra_env={"MY_TOKEN": "t", "X": "1"}), tmp_path)
    described = backend.describe()
    assert described["env"]["MY_TOKEN"] == REDACTED and described["env"]["X"] == "1"
    assert described["env"]["OMP_NUM_THREADS"] == "1"
    assert backend.environment()["MY_TOKEN"] == "t"  # the worker itself gets the real value
