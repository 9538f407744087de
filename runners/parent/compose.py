"""Hydra composition for every command, and the translation of everything that can go
wrong in it into one line a user can act on. Each command has a root config in configs/
(bench, diagnose, analyze, parity, ab, sync, bench_overhead) typed by a dataclass of
runners/config.py; all of them include configs/shared (results dir, tracking store)."""

from __future__ import annotations

import dataclasses
import secrets
import typing

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runners import REPO_ROOT
from runners import config as schemas
from runners.errors import UsageError
from zoo.registry import UnknownName

CONFIG_DIR = REPO_ROOT / "configs"
ROOTS: dict[str, type] = {
    "bench": schemas.BenchConfig,
    "diagnose": schemas.DiagnoseConfig,
    "analyze": schemas.AnalyzeConfig,
    "parity": schemas.ParityConfig,
    "ab": schemas.AbConfig,
    "demo": schemas.DemoConfig,
    "sync": schemas.SyncConfig,
    "bench_overhead": schemas.OverheadConfig,
    "gpu_check": schemas.GpuCheckConfig,
}
GROUPS = ("model", "workload", "backend", "tracking", "diagnostic", "runtime")
_registered = False


def _typed_groups() -> dict[str, dict[str, type]]:
    """Groups whose options each extend their base schema: option name -> its dataclass."""
    from runners.backends import backends
    from runners.scenarios import scenarios

    return {
        "backend": {b.name: b.config_class for b in backends},
        "workload": {s.name: s.config_class for s in scenarios},
    }


def register() -> None:
    """The schemas and resolvers the YAML files refer to; idempotent."""
    global _registered
    if _registered:
        return
    store = ConfigStore.instance()
    for name, root in ROOTS.items():
        store.store(name=f"{name}_schema", node=root)
    for group, options in _typed_groups().items():  # each option's YAML extends its own typed schema
        for name, schema in options.items():
            store.store(group=group, name=f"base_{name}", node=schema)
    # Two sweeps started in the same second must not share Hydra's output folder.
    OmegaConf.register_new_resolver("bench_unique", lambda: secrets.token_hex(3), use_cache=True)
    _registered = True


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _fields(cls) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_key(key: str, root: type, typed: dict[str, type]) -> bool:
    """Raise UnknownName for a key the schema lacks; True when it lands in a free-form dict."""
    node, path = root, []
    for part in key.split("."):
        fields = _fields(node)
        if node is root:
            fields.update({group: schema for group, schema in typed.items() if group in fields})
        if part not in fields:
            raise UnknownName("key", part, list(fields), prefix="".join(f"{p}." for p in path))
        path.append(part)
        node = fields[part]
        if typing.get_origin(node) in (dict, typing.Dict):
            return True
        if not dataclasses.is_dataclass(node):
            return False
    return False


def check_overrides(overrides: list[str], config_name: str = "bench") -> list[str]:
    """Parse and check overrides; return them ready for Hydra (dict keys made appendable)."""
    root = ROOTS[config_name]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise UsageError(f"malformed override: {_first_line(exc)} (form: key=value, see `make help`)") from None
    chosen: dict[str, list[str]] = {}
    for override in parsed:
        key = override.key_or_group
        if key in GROUPS and key not in root.__dataclass_fields__:
            raise UnknownName("key", key, list(root.__dataclass_fields__))
        if override.package is None and key in GROUPS:
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
            for value in values:
                if str(value) not in group_options(key):
                    raise UnknownName(key, value, group_options(key))
            chosen[key] = [str(v) for v in values]
    typed = {
        group: _merged_schema(options, chosen.get(group), root, group) for group, options in _typed_groups().items()
    }
    ready = []
    for override, text in zip(parsed, overrides):
        key = override.key_or_group
        if key not in GROUPS and not key.startswith("hydra"):
            if (
                _check_key(key, root, typed)
                and not override.is_add()
                and not override.is_force_add()
                and not override.is_delete()
            ):
                text = "++" + text  # a new entry of a dict such as backend.extra_env needs no '+'
        ready.append(text)
    return ready


def _merged_schema(options: dict[str, type], chosen: typing.Optional[list[str]], root: type, group: str) -> type:
    """The schema a group's keys are checked against: the chosen option's, or the union over
    the options chosen (a sweep); composing each job then checks each one exactly. With no
    choice, the default option's (the root YAML's defaults), else the union of all."""
    if chosen is None:
        default = _default_option(root, group)
        chosen = [default] if default else list(options)
    classes = [options[name] for name in chosen if name in options]
    if len(classes) == 1:
        return classes[0]
    fields: dict[str, object] = {}
    for cls in classes or list(options.values()):
        fields.update(_fields(cls))
    return dataclasses.make_dataclass(f"{group.title()}Keys", list(fields.items()))


def _default_option(root: type, group: str) -> typing.Optional[str]:
    name = next((n for n, r in ROOTS.items() if r is root), None)
    text = (CONFIG_DIR / f"{name}.yaml").read_text() if name else ""
    for line in text.splitlines():
        stripped = line.strip().lstrip("- ").strip()
        if stripped.startswith(f"{group}:"):
            return stripped.split(":", 1)[1].strip() or None
    return None


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


def compose_config(overrides: list[str], config_name: str = "bench"):
    """Compose and construct the typed config of a command (runs every __post_init__ check)."""
    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides)
        return to_config(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise UsageError(explain(exc)) from None
    finally:
        GlobalHydra.instance().clear()


def command_config(overrides: list[str], config_name: str):
    """A command's typed config from its command line: checked, composed, constructed."""
    return compose_config(check_overrides(overrides, config_name), config_name)


def to_config(cfg):
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:  # before ValueError: OmegaConf's errors are ValueErrors too
        if isinstance(exc.__cause__, ValueError) and not isinstance(exc.__cause__, OmegaConfBaseException):
            raise UsageError(str(exc.__cause__)) from None  # a __post_init__ check
        raise UsageError(explain(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def quote_values(argv: list[str], keys: tuple[str, ...]) -> list[str]:
    """`key=<free text>` as Hydra reads free text: quoted, so that spaces, '=' and quotes in
    a side's filters (`baseline=label='release 2.4' backend=native`) reach the command whole."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in keys and not (len(value) > 1 and value[0] == value[-1] and value[0] in "'\""):
            value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        out.append(f"{key}{sep}{value}" if sep else arg)
    return out
