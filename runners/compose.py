"""Hydra composition, and the translation of everything that can go wrong in it into
one line a user can act on. Every job of a command (all sweep combinations) is
composed, validated and planned here before the first one runs."""
from __future__ import annotations

import dataclasses
import secrets
import typing
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runners.config import BenchConfig
from runners.errors import UsageError
from zoo.registry import UnknownName

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
GROUPS = ("model", "workload", "backend", "tracking")
_registered = False


def register() -> None:
    """The schema and resolvers the YAML files refer to; idempotent."""
    global _registered
    if _registered:
        return
    from runners.backends import backends

    store = ConfigStore.instance()
    store.store(name="bench_schema", node=BenchConfig)
    for backend in backends:  # each backend YAML extends its own typed schema
        store.store(group="backend", name=f"base_{backend.name}", node=backend.config_class)
    # Two sweeps started in the same second must not share Hydra's output folder.
    OmegaConf.register_new_resolver("bench_unique", lambda: secrets.token_hex(3), use_cache=True)
    _registered = True


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _fields(cls) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_key(key: str, backend_schema: type) -> bool:
    """Raise UnknownName for a key the schema lacks; True when it lands in a free-form dict."""
    node, path = BenchConfig, []
    for part in key.split("."):
        fields = _fields(node)
        if node is BenchConfig:
            fields["backend"] = backend_schema
        if part not in fields:
            raise UnknownName("key", part, list(fields), prefix="".join(f"{p}." for p in path))
        path.append(part)
        node = fields[part]
        if typing.get_origin(node) in (dict, typing.Dict):
            return True
        if not dataclasses.is_dataclass(node):
            return False
    return False


def check_overrides(overrides: list[str]) -> list[str]:
    """Parse and check overrides; return them ready for Hydra (dict keys made appendable)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise UsageError(f"malformed override: {_first_line(exc)} (form: key=value, see `make help`)") from None
    ready, chosen_backends = [], ["auto"]
    for override in parsed:
        key = override.key_or_group
        if override.package is None and key in GROUPS:
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
            for value in values:
                if str(value) not in group_options(key):
                    raise UnknownName(key, value, group_options(key))
            if key == "backend":
                chosen_backends = [str(v) for v in values]
    backend_schema = _merged_schema(chosen_backends)
    for override, text in zip(parsed, overrides):
        key = override.key_or_group
        if key not in GROUPS and not key.startswith("hydra"):
            if (_check_key(key, backend_schema) and not override.is_add() and not override.is_force_add()
                    and not override.is_delete()):
                text = "++" + text  # a new entry of a dict such as backend.extra_env needs no '+'
        ready.append(text)
    return ready


def _merged_schema(names: list[str]) -> type:
    """The backend schema keys are checked against: the union over the backends chosen
    (a sweep over backends); composing each job then checks each one exactly."""
    from runners.backends import backends

    classes = [backends.get(name).config_class for name in names if name in backends]
    if len(classes) == 1:
        return classes[0]
    fields = {}
    for cls in classes or [BenchConfig.__dataclass_fields__["backend"].type]:
        fields.update(_fields(cls))
    return dataclasses.make_dataclass("BackendKeys", list(fields.items()))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def explain(exc: BaseException) -> str:
    """One line for a composition or validation error."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        message = _first_line(cause)
        return f"invalid value for {key}: {message}" if key else message
    if isinstance(exc, OmegaConfBaseException):
        key = getattr(exc, "full_key", None)
        return f"invalid value for {key}: {_first_line(exc)}" if key else _first_line(exc)
    message = _first_line(exc)
    if "Ambiguous value for argument" in str(exc):
        message += " (to sweep over several values use `make sweep` or --multirun)"
    return message


def sweep_combinations(overrides: list[str], multirun: bool) -> list[list[str]]:
    if not multirun:
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    except HydraException as exc:
        raise UsageError(f"malformed override: {_first_line(exc)}") from None
    return [list(combo) for batch in batches for combo in batch]


def compose_config(overrides: list[str]) -> BenchConfig:
    """Compose and construct the typed config (runs every __post_init__ check)."""
    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("bench", overrides=overrides)
        return to_config(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise UsageError(explain(exc)) from None
    finally:
        GlobalHydra.instance().clear()


def to_config(cfg) -> BenchConfig:
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:  # before ValueError: OmegaConf's errors are ValueErrors too
        if isinstance(exc.__cause__, ValueError) and not isinstance(exc.__cause__, OmegaConfBaseException):
            raise UsageError(str(exc.__cause__)) from None  # a __post_init__ check
        raise UsageError(explain(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
