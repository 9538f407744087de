"""A cache of the random weights a PyTorch zoo model starts from, so a worker builds a
model it built before without paying its random initialization again (BERT-base: 1-2 s
on a desktop CPU, 8-16 s on a GPU server's host; transformers initializes twice, once in
each layer's constructor and again in its own `_init_weights`).

The first build with a given key initializes as always, then saves every parameter and
buffer (the non-persistent ones too: a model built on `meta` has none) and the CPU
random generator's state after the build, in one safetensors file, written atomically.
A later build constructs the model on the `meta` device (no memory, no random numbers),
puts the saved tensors in place and restores the generator, so weights, tied
parameters and the dropout masks that follow are bit-identical to a fresh build.

The key holds everything the weights depend on: the entry (its class, settings and the
source of the zoo files that define it), size, input shape, seed, the versions of torch,
transformers and torchvision, and the CPU (its random normal kernels are vectorized per
instruction set). Anything that does not fit (a tensor the file lacks, a module that keeps
a tensor outside its parameters and buffers, an unreadable file) falls back to a fresh
build: the cache never changes what a run computes, only how long it takes to start.

VGPU_BENCH_WEIGHT_CACHE_MAX_MB (default 1024) caps the models it keeps; 0 turns it off."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import platform
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

FORMAT = 1
MAX_MB_VARIABLE = "VGPU_BENCH_WEIGHT_CACHE_MAX_MB"
# A folder shared by several results folders: gpu-check gives each item a results folder of
# its own, and without it every item would pay the random initialization again.
DIR_VARIABLE = "VGPU_BENCH_WEIGHT_CACHE"
DEFAULT_MAX_MB = 1024
_RNG = "__cpu_rng_state__"  # not a module path: cannot collide with a parameter's name
# The in-place random fills, which a meta tensor has no values for. torch has no meta kernel
# for some (normal_ is a Python reference): its first call imports torch._dynamo and sympy,
# 2 s on a 2-core machine, which a ResNet's worker would pay for nothing.
_RANDOM_FILLS = ("normal_", "uniform_", "random_", "bernoulli_", "exponential_", "geometric_", "log_normal_", "cauchy_")


class Miss(Exception):
    """The cached file cannot stand for a fresh build of this model."""


def folder(results_dir: str) -> Path:
    """$VGPU_BENCH_WEIGHT_CACHE where set, else <results_dir>/.cache/weights."""
    shared = os.environ.get(DIR_VARIABLE)
    return Path(shared) if shared else Path(results_dir).resolve() / ".cache" / "weights"


def max_bytes() -> int:
    try:
        return int(float(os.environ.get(MAX_MB_VARIABLE, DEFAULT_MAX_MB)) * 2**20)
    except ValueError:
        return DEFAULT_MAX_MB * 2**20


def _versions() -> dict[str, Optional[str]]:
    from importlib import metadata

    found: dict[str, Optional[str]] = {}
    for package in ("torch", "transformers", "torchvision"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def _source_digest(entry: Any) -> str:
    """The zoo files that define the entry: editing its build (or a base's) is a new key."""
    digest = hashlib.sha256()
    for cls in type(entry).__mro__:
        if cls.__module__.split(".")[0] == "zoo":
            digest.update(Path(inspect.getfile(cls)).read_bytes())
    return digest.hexdigest()


def key(entry: Any, shape: Any, seed: int) -> dict[str, Any]:
    import torch

    return {
        "format": FORMAT,
        "model": entry.name,
        "size": entry.size,
        "class": f"{type(entry).__module__}.{type(entry).__qualname__}",
        "settings": repr(sorted(entry.settings.items())),
        "source": _source_digest(entry),
        "shape": asdict(shape),
        "seed": seed,
        "versions": _versions(),
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def path_for(cache_dir: Path, entry_key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(entry_key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir / f"{entry_key['model']}-{entry_key['size']}-seed{entry_key['seed']}-{digest}.safetensors"


def _slots(model: Any):
    """Every (module, kind, name, tensor, full name) of the model, tied ones once per place."""
    for prefix, module in model.named_modules(remove_duplicate=False):
        for kind in ("_parameters", "_buffers"):
            for name, tensor in getattr(module, kind).items():
                if tensor is not None:
                    yield module, kind, name, tensor, f"{prefix}.{name}" if prefix else name


def _tensors(model: Any) -> dict[str, Any]:
    """Each distinct parameter and buffer under the first name it has (as named_parameters)."""
    seen, tensors = set(), {}
    for _, _, _, tensor, full in _slots(model):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            tensors[full] = tensor.detach()
    return tensors


def save(entry: Any, shape: Any, model: Any, path: Path, entry_key: dict[str, Any]) -> Optional[str]:
    """Write the model's weights and the generator's state; None, or why nothing was written."""
    import torch
    from safetensors.torch import save_file

    rng = torch.get_rng_state()  # as the fresh build left it, before anything else draws
    tensors = _tensors(model)
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    if size > max_bytes():
        return f"{size / 2**20:.0f} MiB of weights is over the cache's {max_bytes() / 2**20:.0f} MiB"
    if any(t.device.type != "cpu" for t in tensors.values()):
        return "weights not in host memory"
    if not all(t.is_contiguous() for t in tensors.values()):
        return "not cacheable: a tensor is not contiguous (a loaded one would be, with other strides)"
    path.parent.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(path.parent).free < 2 * size + 2**30:
        return "less than a GiB free on the cache's disk after writing"
    try:  # only a file that a later build can use
        _materialize(_skeleton(entry, shape), dict(tensors))
    except Miss as exc:
        return f"not cacheable: {exc}"
    finally:
        torch.set_rng_state(rng)
    tensors[_RNG] = rng
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        # Other workers may write the same key at once: each writes its own file and the
        # rename is atomic, so a reader sees a whole file (all of them identical) or none.
        save_file(tensors, str(partial), metadata={"key": json.dumps(entry_key, sort_keys=True)})
        os.replace(partial, path)
    except Exception as exc:  # noqa: BLE001  (a full disk or shared tensors: run without the cache)
        partial.unlink(missing_ok=True)
        return f"could not write the cache: {exc}"
    return None


@contextlib.contextmanager
def _on_meta():
    """New tensors on the meta device; filling a meta tensor with random numbers does nothing
    (it has no values to fill), other tensors fill as always."""
    import torch

    originals = {name: getattr(torch.Tensor, name) for name in _RANDOM_FILLS}
    own = {name for name in _RANDOM_FILLS if name in vars(torch.Tensor)}  # the others are torch._C.TensorBase's

    def skipping(original):
        def fill(self, *args, **kwargs):
            return self if self.is_meta else original(self, *args, **kwargs)

        return fill

    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, skipping(original))
        with torch.device("meta"):
            yield
    finally:
        for name, original in originals.items():
            if name in own:
                setattr(torch.Tensor, name, original)
            elif name in vars(torch.Tensor):
                delattr(torch.Tensor, name)


def _skeleton(entry: Any, shape: Any) -> Any:
    """The model built on the meta device: its structure without memory or random numbers.
    Its libraries are imported before, outside the meta device (a module's import-time
    tensors would be meta tensors); a build that still imports something is refused."""
    import torch.utils._device  # noqa: F401  (what a `with torch.device(...)` imports on first use)

    entry.import_framework()
    before = set(sys.modules)
    with _on_meta():
        model = entry.build(shape)
    if len(sys.modules) != len(before):
        new = sorted(set(sys.modules) - before)
        raise Miss(f"building {entry.name} imported {', '.join(new[:4])}: its import_framework() does not")
    return model


def _materialize(model: Any, tensors: dict[str, Any]) -> None:
    """Put the saved tensors in place of the meta ones, keeping ties (one tensor, many places)."""
    import torch

    placed: dict[int, Any] = {}
    used = set()
    for module, kind, name, tensor, full in _slots(model):
        if id(tensor) not in placed:
            value = tensors.get(full)
            if value is None or value.shape != tensor.shape or value.dtype != tensor.dtype:
                raise Miss(f"{full}: not in the cache as the model has it")
            used.add(full)
            if kind == "_parameters":
                value = torch.nn.Parameter(value, requires_grad=tensor.requires_grad)
            placed[id(tensor)] = value
        getattr(module, kind)[name] = placed[id(tensor)]
    if used != set(tensors):
        raise Miss(f"the cache has tensors the model lacks: {sorted(set(tensors) - used)[:3]}")
    for prefix, module in model.named_modules():
        for attribute, value in vars(module).items():
            if isinstance(value, torch.Tensor) and value.is_meta:
                raise Miss(f"{prefix or 'the model'}.{attribute} is a tensor outside the parameters and buffers")


def load(entry: Any, shape: Any, path: Path, entry_key: dict[str, Any]) -> Any:
    """The model built on `meta` and filled from the file; the generator as after a fresh build."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("key") != json.dumps(entry_key, sort_keys=True):
            raise Miss("the file was written for another key")
    tensors = load_file(str(path), backend="pread")  # read now, in this phase; not mapped pages read later
    rng = tensors.pop(_RNG)
    model = _skeleton(entry, shape)
    _materialize(model, tensors)
    torch.set_rng_state(rng)
    return model


def build(entry: Any, shape: Any, seed: int, cache_dir: Optional[Path]) -> tuple[Any, dict[str, Any]]:
    """The model, seeded, from the cache where it holds it; and where its weights came from:
    {"weights": "cache"} or {"weights": "init"} (with "cached": true when this build wrote
    the file, or "not_cached": why not)."""
    import torch

    torch.manual_seed(seed)
    if cache_dir is None or max_bytes() <= 0:
        return entry.build(shape), {"weights": "init", "not_cached": "cache off"}
    try:
        entry_key = key(entry, shape, seed)
        path = path_for(Path(cache_dir), entry_key)
    except Exception as exc:  # noqa: BLE001  (no key, no cache; the run goes on)
        return entry.build(shape), {"weights": "init", "not_cached": f"no key: {type(exc).__name__}: {exc}"[:300]}
    source: dict[str, Any] = {"weights": "init"}
    if path.exists():
        try:
            return load(entry, shape, path, entry_key), {"weights": "cache", "file": path.name}
        except Exception as exc:  # noqa: BLE001  (the cache is an optimization: build as if it were not there)
            source["cache_unusable"] = f"{type(exc).__name__}: {exc}"[:300]
            torch.manual_seed(seed)
    model = entry.build(shape)
    try:
        why_not = save(entry, shape, model, path, entry_key)
    except Exception as exc:  # noqa: BLE001  (a read-only results folder, no safetensors: run without the cache)
        why_not = f"could not write the cache: {type(exc).__name__}: {exc}"[:300]
    source.update({"not_cached": why_not} if why_not else {"cached": True, "file": path.name})
    return model, source
