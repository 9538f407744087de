"""Alibaba MNN (runtime=mnn): the ONNX export converted to .mnn by MNN's converter extension,
called directly (its mnnconvert/mnnquant wrapper scripts pip-install a cloud logging SDK and
upload the machine id and model details), and run with MNN's module API. MNN falls back to
its CPU backend when the requested one is not built in, saying so only on stdout. Its Python
API does not say which backend a module got (getSessionInfo's BACKENDS code comes back as a
float, the same for CPU and a fallen-back CUDA), so the check fails closed: a GPU backend
passes only with the notice absent AND the GPU API it drives at work in this process (for
CUDA, the runtime it loaded with a context on the device; for OpenCL/Vulkan, their loader
library mapped). A reworded notice can no longer pass as engaged."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runners.contracts import Check
from runners.worker.frameworks import frameworks
from runners.worker.frameworks.exported import ConversionError, Export, ExportedFramework, c_output, cpu_threads

BACKENDS = {"cpu": "CPU", "cuda": "CUDA", "opencl": "OPENCL", "vulkan": "VULKAN"}
FALLBACK = re.compile(r"Can't Find type=\d+ backend, use \d+ instead")


GPU_APIS = {"OPENCL": "libOpenCL", "VULKAN": "libvulkan"}


def backend_at_work(wanted: str) -> tuple[bool, str]:
    """Whether this process shows MNN's `wanted` backend at work, and what shows it."""
    if wanted == "CPU":
        return True, "the CPU backend is always built in"
    from runners.worker.cudart import runtime_device
    from runners.worker.fingerprint import mapped_files

    mapped = mapped_files()
    if wanted == "CUDA":
        device = runtime_device(mapped, "MNN CUDA")
        if device.get("memory_total_seen_mb") is not None:
            return True, f"the CUDA runtime it loaded has a context on {device.get('name')}"
        return False, f"no CUDA device at work in this process ({device.get('error', 'no CUDA runtime loaded')})"
    loaded = [path for path in mapped if Path(path).name.startswith(GPU_APIS[wanted])]
    if loaded:
        return True, f"{GPU_APIS[wanted]} is loaded ({loaded[0]})"
    return False, f"no {GPU_APIS[wanted]} is loaded in this process"


def convert(export: Export) -> Path:
    """The export's .mnn file, converted once (next to the ONNX file it came from)."""
    import os

    target = export.directory / "model.mnn"
    if target.exists():
        return target
    import _tools  # MNN's converter extension (the C++ MNNConvert), shipped in the MNN wheel

    tmp = target.with_name(f"model.mnn.tmp-{os.getpid()}")
    with c_output() as printed:
        _tools.mnnconvert(
            [
                "mnnconvert",
                "-f",
                "ONNX",
                "--modelFile",
                str(export.onnx),
                "--MNNModel",
                str(tmp),
                "--bizCode",
                "vgpu-bench",
            ]
        )
    if not tmp.exists():
        why = [line.split(": ", 2)[-1] for line in printed[0].splitlines() if "Not Support" in line or "rror" in line]
        raise ConversionError(
            f"MNN's converter could not convert {export.directory.name}: {'; '.join(why) or printed[0].strip()[-300:]}"
        )
    os.replace(tmp, target)
    return target


@frameworks.register
class MnnFramework(ExportedFramework):
    name = "mnn"

    def open(self, export):
        import numpy as np

        model = convert(export)
        with c_output():
            import MNN  # prints the CPU's features on import
        F = MNN.expr
        wanted = BACKENDS[self.runtime.provider]
        config = {"backend": wanted, "precision": "high", "numThread": cpu_threads(self.threads)}
        names = [spec["name"] for spec in export.inputs]
        with c_output() as printed:
            runtime = MNN.nn.create_runtime_manager((config,))
            module = MNN.nn.load_module_from_file(str(model), names, export.outputs, runtime_manager=runtime)
        fallback = FALLBACK.search(printed[0])
        seen, how = backend_at_work(wanted)
        self.backend_info = {"requested": wanted, "config": config, "fallback": fallback.group(0) if fallback else None}
        self.checks.append(
            Check(
                "runtime_backend",
                fallback is None and seen,
                f"requested MNN backend {wanted}: "
                + (f"MNN fell back ({fallback.group(0)}; 0 is its CPU backend)" if fallback else "no fallback reported")
                + f"; {how}",
            )
        )
        if wanted != "CPU":
            self.gpu = self.gpu_of_provider(wanted)
        # MNN takes 32-bit integers where the export has int64 token ids (its converter narrows them).
        kinds = {
            spec["name"]: (F.int, np.int32) if "int" in spec["dtype"] else (F.float, np.float32)
            for spec in export.inputs
        }

        def run(feeds):
            inputs = [
                F.const(feeds[n].astype(kinds[n][1], copy=False), list(feeds[n].shape), F.NCHW, kinds[n][0])
                for n in names
            ]
            return [np.array(out.read(), copy=True) for out in module.onForward(inputs)]

        return run

    def describe(self) -> dict[str, Any]:
        import MNN

        return {
            "mnn": MNN.version(),
            "backend": getattr(self, "backend_info", {}),
            "threads": cpu_threads(self.threads),
            "export": str(self.exported.directory) if self.exported else None,
        }
