import pytest

import zoo
from runners.backends import backends
from runners.worker.frameworks import frameworks
from zoo.registry import Registry, UnknownName


def test_unknown_name_suggests_the_closest_and_lists_all():
    with pytest.raises(UnknownName) as info:
        zoo.get("bertt")
    message = str(info.value)
    assert "unknown model 'bertt'" in message
    assert "Did you mean 'bert'?" in message
    assert "Valid:" in message and "resnet50" in message


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(UnknownName) as info:
        backends.get("zzzz")
    assert "Did you mean" not in str(info.value)
    assert "cpu" in str(info.value)


def test_registering_a_name_twice_is_refused():
    registry = Registry("thing")

    class A:
        name = "a"

    registry.register(A)
    with pytest.raises(ValueError):
        registry.register(A)


def test_every_model_names_a_registered_framework():
    for entry in zoo.models:
        assert entry.framework in frameworks
        assert entry.default_size in entry.sizes and "tiny" in entry.sizes


def test_hidden_entries_are_not_listed():
    assert "dummy" not in zoo.list()
    assert {"bert", "resnet50"} <= set(zoo.list())


def test_every_registry_and_its_config_folder_name_the_same_things():
    """One registration point: a model, scenario, backend or diagnostic registered in code
    has its YAML file, and no YAML file names something unregistered."""
    from runners.diagnostics import diagnostics
    from runners.parent import compose
    from runners.scenarios import scenarios

    for group, registry in (
        ("model", zoo.models),
        ("workload", scenarios),
        ("backend", backends),
        ("diagnostic", diagnostics),
    ):
        assert compose.group_options(group) == registry.names(), group
