"""Property-based test of the command line: any override either is accepted, or is
refused with one clear line and exit code 2; never a traceback."""

import os
import subprocess
import sys
import tempfile
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runners.cli import bench
from runners.errors import UsageError
from zoo.registry import UnknownName

from conftest import REPO

KEYS = [
    "model",
    "workload",
    "backend",
    "tracking",
    "seed",
    "label",
    "timeout_s",
    "tenants",
    "repeats",
    "resume",
    "model.size",
    "model.name",
    "workload.batch_size",
    "workload.precision",
    "workload.seq_len",
    "workload.compile",
    "workload.tf_mode",
    "workload.target_ci",
    "backend.threads",
    "backend.extra_env.X",
    "backend.gmem_mib",
    "backend.sm_percent",
    "tracking.uri",
    "hydra.job.chdir",
    "nope",
    "workload.nope",
]
VALUES = st.one_of(
    st.sampled_from(
        [
            "bert",
            "resnet50",
            "train",
            "infer",
            "generate",
            "cpu",
            "vgpu",
            "mps",
            "fp8",
            "bf16",
            "tiny",
            "null",
            "true",
            "[1,2]",
            "{a: 1}",
            "'quoted'",
            "${oc.env:HOME}",
            "1,2",
            "range(0,3)",
            "",
        ]
    ),
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)
OVERRIDE = st.one_of(
    st.builds(
        lambda p, k, v: f"{p}{k}={v}",
        st.sampled_from(["", "", "", "+", "++", "~"]),
        st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=10)),
        VALUES,
    ),
    st.text(max_size=20),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OVERRIDE, max_size=4), st.booleans())
def test_any_override_is_accepted_or_refused_cleanly(overrides, multirun):
    with tempfile.TemporaryDirectory() as results, mock.patch.dict(os.environ, {"VGPU_BENCH_RESULTS": results}):
        try:
            bench.validate([o for o in overrides if not o.startswith("-")], multirun=multirun)
        except (UsageError, UnknownName) as exc:
            message = str(exc)
            assert message and "\n" not in message and "Traceback" not in message


def test_the_real_command_line_never_shows_a_traceback(tmp_path):
    samples = [
        ["workload.batch_size=${oc.env:NOPE}"],
        ["+nope=1"],
        ["~model"],
        ["model=[a,b]"],
        ["seed=1e400"],
        ["workload.precision=\x01"],
        ["model@pkg=bert"],
        ["backend.extra_env=[1]"],
        ["label={a: 1}"],
        ["="],
    ]
    for overrides in samples:
        done = subprocess.run(
            [sys.executable, "-m", "runners.cli.bench", *overrides, "dry_run=true"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "VGPU_BENCH_RESULTS": str(tmp_path)},
        )
        assert "Traceback" not in done.stderr, (overrides, done.stderr[-1500:])
        if done.returncode != 0:
            assert done.returncode == 2 and done.stderr.count("\n") == 1, (overrides, done.stderr)
