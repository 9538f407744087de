"""ONNX Runtime (runtime=onnxruntime): the zoo's PyTorch model exported to ONNX, run by an
InferenceSession on the requested execution provider. ORT drops a provider it cannot load
with a warning and runs on the CPU: the providers the session really got are recorded and
checked, so such a run is invalid, never CPU figures labelled GPU."""

from __future__ import annotations

from typing import Any

from runners.contracts import Check
from runners.worker.frameworks import frameworks
from runners.worker.frameworks.exported import ExportedFramework, cpu_threads

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


@frameworks.register
class OnnxRuntimeFramework(ExportedFramework):
    name = "onnxruntime"

    def open(self, export):
        import onnxruntime as ort

        ort.disable_telemetry_events()  # only Windows builds send any; off all the same
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads(self.threads)
        options.inter_op_num_threads = 1
        wanted = PROVIDERS[self.runtime.provider]
        # The CPU provider after a GPU one: ORT places the operators a GPU provider lacks there.
        requested = [wanted] if wanted == PROVIDERS["cpu"] else [wanted, PROVIDERS["cpu"]]
        session = ort.InferenceSession(str(export.onnx), options, providers=requested)
        ran = session.get_providers()
        self.session_info = {"requested": requested, "ran": ran, "available": ort.get_available_providers()}
        self.checks.append(
            Check(
                "runtime_provider",
                wanted in ran,
                f"requested {wanted}; the session runs on {', '.join(ran)} "
                f"(this onnxruntime has {', '.join(self.session_info['available'])})",
            )
        )
        if wanted in ran and wanted != PROVIDERS["cpu"]:
            self.gpu = self.gpu_of_provider(wanted)
        names = [spec["name"] for spec in export.inputs]
        return lambda feeds: session.run(None, {n: feeds[n] for n in names})

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "onnxruntime": ort.__version__,
            "providers": getattr(self, "session_info", {}),
            "threads": cpu_threads(self.threads),
            "export": str(self.exported.directory) if self.exported else None,
        }
