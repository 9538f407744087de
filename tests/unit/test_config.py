import pytest

from runners.config import BenchConfig, DiagnoseConfig, Precision, flatten
from runners.errors import UsageError
from runners.parent import compose
from zoo.registry import UnknownName


def test_defaults_compose_to_the_documented_job():
    config = compose.compose_config([])
    assert isinstance(config, BenchConfig)
    assert (config.model.name, config.workload.kind, config.backend.name, config.tracking.name) == (
        "bert",
        "infer",
        "auto",
        "mlflow",
    )
    assert config.workload.precision is Precision.fp32


@pytest.mark.parametrize("group", compose.GROUPS)
def test_every_shipped_option_composes(group):
    root = "diagnose" if group == "diagnostic" else "bench"
    for option in compose.group_options(group):
        config = compose.compose_config([f"{group}={option}"], root)
        node = getattr(config, group)
        assert (node.kind if group == "workload" else node.name) == option


@pytest.mark.parametrize("root", sorted(compose.ROOTS))
def test_every_command_config_composes_with_the_shared_results_dir_and_store(root, monkeypatch):
    monkeypatch.setenv("VGPU_BENCH_RESULTS", "/somewhere/else")
    required = {"parity": ["candidate='backend=cpu'"], "ab": ["candidate='backend=cpu'"], "demo": ["input=a sentence"]}
    config = compose.compose_config(required.get(root, []), root)
    assert isinstance(config, compose.ROOTS[root])
    assert config.results_dir == "/somewhere/else" and config.tracking.name == "mlflow"


def test_a_scenario_s_own_knob_exists_only_where_it_applies():
    assert compose.compose_config(["workload=generate", "workload.new_tokens=4"]).workload.new_tokens == 4
    with pytest.raises(UnknownName, match="workload.new_tokens"):
        compose.check_overrides(["workload=infer", "workload.new_tokens=4"])
    with pytest.raises(UnknownName, match="workload.processes"):
        compose.check_overrides(["workload.processes=2"])  # the default workload is infer


def test_diagnostics_have_their_own_config_not_a_fake_model():
    config = compose.command_config(["diagnostic=microbench", "backend=cpu"], "diagnose")
    assert isinstance(config, DiagnoseConfig) and config.diagnostic.name == "microbench"
    assert not hasattr(config, "model") and not hasattr(config, "workload")
    with pytest.raises(UnknownName, match="unknown workload 'probe'"):
        compose.check_overrides(["workload=probe"])


def test_free_text_values_reach_a_command_whole():
    argv = compose.quote_values(
        ["baseline=label='release 2.4' backend=native", "tolerance=0.05"], ("baseline", "candidate")
    )
    config = compose.command_config(argv, "analyze")
    assert config.baseline == "label='release 2.4' backend=native" and config.tolerance == 0.05


def test_overrides_reach_the_typed_config():
    config = compose.compose_config(
        [
            "model=resnet50",
            "workload=train",
            "workload.batch_size=4",
            "workload.precision=bf16",
            "backend.threads=1",
            "label=x",
        ]
    )
    assert config.model.name == "resnet50" and config.workload.kind == "train"
    assert config.workload.batch_size == 4 and config.workload.precision is Precision.bf16
    assert config.backend.threads == 1 and config.label == "x"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("workload.batch_size=0", "workload.batch_size must be >= 1, got 0"),
        ("workload.precision=fp8", "invalid value for workload.precision"),
        ("workload.batch_size=abc", "invalid value for workload.batch_size"),
        ("workload.max_duration_s=-1", "workload.max_duration_s must be > 0"),
        ("backend.threads=0", "backend.threads must be >= 1"),
        ("timeout_s=0", "timeout_s must be > 0"),
    ],
)
def test_invalid_values_are_rejected_with_the_key(override, expected):
    with pytest.raises(UsageError, match=expected.replace(".", r"\.")):
        compose.compose_config(compose.check_overrides([override]))


def test_precision_error_lists_the_valid_values():
    with pytest.raises(UsageError) as info:
        compose.compose_config(["workload.precision=fp8"])
    assert all(p in str(info.value) for p in ("fp32", "fp16", "bf16"))


def test_unknown_key_suggests_the_closest():
    with pytest.raises(UnknownName) as info:
        compose.check_overrides(["workload.batch_sise=4"])
    assert "Did you mean 'workload.batch_size'?" in str(info.value)


def test_unknown_group_option_suggests_the_closest():
    with pytest.raises(UnknownName, match="Did you mean 'resnet50'"):
        compose.check_overrides(["model=resnet5"])
    with pytest.raises(UnknownName, match="unknown workload 'inference'"):
        compose.check_overrides(["workload=infer,inference"])


def test_malformed_override_is_a_usage_error():
    with pytest.raises(UsageError, match="malformed override"):
        compose.check_overrides(["workload.batch_size=[1,"])


def test_extra_env_entries_need_no_plus():
    ready = compose.check_overrides(["backend.extra_env.MY_VAR=1"])
    config = compose.compose_config(ready)
    assert config.backend.extra_env == {"MY_VAR": "1"}


def test_sweeps_expand_to_every_combination():
    combos = compose.sweep_combinations(["model=bert,resnet50", "workload=infer,train"], multirun=True)
    assert len(combos) == 4
    assert ["model=resnet50", "workload=train"] in combos


def test_flatten_gives_mlflow_param_names():
    flat = flatten(compose.compose_config([]))
    assert flat["workload.batch_size"] == 8 and flat["workload.precision"] == "fp32"
    assert flat["model.name"] == "bert"
