"""Runtimes that run an export of a zoo PyTorch model (runtime=onnxruntime|mnn): the model is
exported to ONNX once per model, size, batch, input shape, precision, opset, seed and weights,
cached under <results>/exports/ with its seeded batch, and MNN converts that ONNX file on.
An adapter opens the export and runs it; the provider or backend that actually ran is proved
as a check of the run's evidence (a requested one that did not run makes the run invalid)."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from runners.contracts import Check
from runners.worker.frameworks import Framework

META = "export.json"


class ExportError(RuntimeError):
    """The PyTorch model could not be exported to ONNX (an operator, a dynamic shape)."""


class ConversionError(RuntimeError):
    """MNN's converter could not convert the ONNX export (an operator it lacks)."""


@dataclass
class Export:
    directory: Path
    inputs: list[dict[str, Any]]  # name, dtype (numpy's name), shape: what the ONNX graph takes
    outputs: list[str]
    params: int  # of the PyTorch model exported

    @property
    def onnx(self) -> Path:
        return self.directory / "model.onnx"

    def batch(self) -> dict[str, Any]:
        """The seeded batch the export was made with (the PyTorch reference's batch, to the bit)."""
        import numpy as np

        with np.load(self.directory / "inputs.npz") as saved:
            return {spec["name"]: saved[spec["name"]] for spec in self.inputs}

    @classmethod
    def load(cls, directory: Path) -> "Export":
        meta = json.loads((directory / META).read_text())
        return cls(directory, meta["inputs"], meta["outputs"], meta["params"])


def export_key(entry, shape, batch_size: int, seed: int, precision: str, opset: int, weights: Optional[str]) -> str:
    per_sample = f"{shape.image_size}px" if entry.inputs == "image" else f"{shape.seq_len}tok"
    key = f"{entry.name}-{entry.size}-b{batch_size}-{per_sample}-{precision}-opset{opset}-seed{seed}"
    if weights:  # the file's identity: a changed checkpoint is exported again
        stat = Path(weights).stat()
        ident = f"{Path(weights).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        key += "-w" + hashlib.sha256(ident.encode()).hexdigest()[:10]
    return key


class _Forward:
    """The entry's forward over positional tensors, as torch.onnx.export calls a module."""

    @staticmethod
    def wrap(entry, model, names: list[str]):
        import torch

        class Forward(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, *tensors):
                return entry.forward(self.model, dict(zip(names, tensors)))

        return Forward().eval()


def onnx_export(framework: Framework, entry, shape, batch_size: int, seed: int, opset: int, log=print) -> Export:
    """The cached export, or a new one; ExportError says why the exporter refused."""
    key = export_key(entry, shape, batch_size, seed, framework.precision, opset, framework.weights)
    directory = framework.exports_dir / key
    if (directory / META).exists():
        log(f"export: cached {directory}")
        return Export.load(directory)
    import numpy as np
    import onnx
    import torch

    torch.manual_seed(seed)  # the same random weights as the PyTorch reference of this seed
    model = framework.load_weights(entry, entry.build(shape)).eval()
    if hasattr(model, "set_attn_implementation"):
        # transformers' SDPA path exports as softmax + IsNaN/Where (torch's safe softmax), which
        # MNN's converter lacks; eager attention is the same arithmetic with a plain softmax.
        model.set_attn_implementation("eager")
    batch = entry.make_batch(batch_size, shape, seed)
    names = [k for k in batch if k != "labels"]
    tmp = directory.with_name(f"{key}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(
            _Forward.wrap(entry, model, names),
            tuple(batch[n] for n in names),
            str(tmp / "model.onnx"),
            input_names=names,
            output_names=["output"],
            opset_version=opset,
            dynamo=True,
            external_data=False,
        )
        graph = onnx.load(str(tmp / "model.onnx"), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001  (whatever the exporter raises is the reason)
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"torch.onnx.export of {entry.name} ({entry.size}) failed: {_reason(exc)}") from exc
    inputs = [
        {
            "name": i.name,
            "dtype": np.dtype(onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)).name,
            "shape": [d.dim_value for d in i.type.tensor_type.shape.dim],
        }
        for i in graph.input
    ]
    np.savez(tmp / "inputs.npz", **{i["name"]: batch[i["name"]].numpy() for i in inputs})
    meta = {
        "key": key,
        "inputs": inputs,
        "outputs": [o.name for o in graph.output],
        "params": sum(p.numel() for p in model.parameters()),
        "opset": opset,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
    }
    (tmp / META).write_text(json.dumps(meta, indent=2))
    _publish(tmp, directory)
    log(f"export: {entry.name} ({entry.size}) -> {directory}")
    return Export.load(directory)


def _reason(exc: Exception) -> str:
    """The exporter's own cause ("No ONNX function found for <aten op>"), not its advice."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    if "## Exception summary" in lines[:-1]:
        return re.sub(r"^<class '[\w.]+'>: ", "", lines[lines.index("## Exception summary") + 1])
    return lines[0] if lines else type(exc).__name__


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished export into place whole; another process that got there first wins."""
    try:
        os.replace(tmp, final)
    except OSError:  # final exists (a tenant exported the same model at the same time)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def c_output(echo: bool = True):
    """What native code prints on fds 1 and 2 (MNN's converter and its backend fallback notice
    use printf, not Python), captured into the yielded list and echoed to the log afterwards.
    C's stdout is fully buffered into a file: flushed before the descriptors are put back."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    sys.stderr.flush()
    libc.fflush(None)
    captured: list[str] = []
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            libc.fflush(None)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))
    if echo and captured[0]:
        sys.stdout.write(captured[0])
        sys.stdout.flush()


def cpu_threads(threads: Optional[int]) -> int:
    """backend.threads, else every CPU this process may use (what PyTorch takes by default here)."""
    return threads or len(os.sched_getaffinity(0))


class ExportedFramework(Framework):
    """An adapter that runs the ONNX export: subclasses open it and say what ran."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.checks: list[Check] = []
        self.gpu: dict[str, Any] = {}  # the device a GPU provider ran on, for the backend's checks
        self.exported: Optional[Export] = None

    def open(self, export: Export) -> Callable[[dict[str, Any]], list[Any]]:
        """A function from the named input arrays to the output arrays, on the requested provider."""
        raise NotImplementedError

    def _prepare(self, entry, shape, batch_size: int, seed: int):
        self.exported = onnx_export(self, entry, shape, batch_size, seed, self.runtime.opset)
        self.mark("build")
        run = self.open(self.exported)
        self.mark("to_device")
        return run, self.exported.batch()

    def infer_step(self, entry, workload, shape, seed):
        run, feeds = self._prepare(entry, shape, workload.batch_size, seed)
        traffic = self.traffic
        traffic.inputs = "host"  # the runtime reads host arrays and returns host arrays
        sizes = [a.nbytes for a in feeds.values()]

        def infer_step():
            traffic.to_device(sizes)
            outputs = run(feeds)
            traffic.to_host([o.nbytes for o in outputs])
            return outputs

        return infer_step

    def parity(self, entry, batch_size, shape, seed, steps):
        """The export's outputs on the reference's seeded batch; no training (inference only)."""
        run, feeds = self._prepare(entry, shape, batch_size, seed)
        return run(feeds)[0].astype("float32"), []

    def param_count(self) -> Optional[int]:
        return self.exported.params if self.exported else None

    def runtime_checks(self) -> list[Check]:
        return self.checks

    def device_seen(self) -> dict[str, Any]:
        return self.gpu

    def gpu_of_provider(self, provider: str) -> dict[str, Any]:
        """The GPU a provider that ran is on, asked of the CUDA runtime it loaded into this
        process (runners/worker/cudart.py); the values None, with why, where none answers."""
        from runners.worker.cudart import runtime_device
        from runners.worker.fingerprint import mapped_files

        source = f"{self.name} {provider}"
        return runtime_device(mapped_files(), source) or {
            "source": source,
            "name": None,
            "uuid": None,
            "error": "no CUDA runtime with a device is loaded in this process",
        }
