"""runtime=...: planned and refused in one line, paired across runtimes on the same model and
shape, and an MNN conversion that fails says why (no model export here: tests/integration)."""

import subprocess
import sys

import pytest
from test_pairing import Store, _run

from runners.analysis.compare import compare_runs
from runners.errors import UsageError
from runners.parent import compose
from runners.parent.plan import plan

EXPORT = {"runtime.provider": "cpu", "runtime.opset": "18"}


def _plan(*overrides):
    return plan(compose.command_config(["backend=cpu", "tracking=none", *overrides], "bench"))


def test_auto_is_the_entry_s_own_framework_and_an_exported_runtime_is_named():
    assert _plan("model=resnet50").config.runtime.name == "pytorch"
    assert _plan("model=dummy").config.runtime.name == "python"
    exported = _plan("model=resnet50", "runtime=mnn")
    assert exported.config.runtime.name == "mnn" and exported.run_name == "resnet50-infer-cpu-mnn"


@pytest.mark.parametrize(
    "overrides, says",
    [
        (
            ["model=t5", "runtime=onnxruntime"],
            "models on onnxruntime: bert, efficientnet_b0, gpt2, mobilenet_v3_large,",
        ),
        (["model=gpt2", "runtime=mnn"], "it runs on pytorch, onnxruntime); models on mnn: bert, mobilenet_v3_large"),
        (["model=keras_resnet50", "runtime=pytorch"], "does not run on pytorch (it runs on tensorflow)"),
        (["model=bert", "runtime=onnxruntime", "workload=train"], "runs inference only (workload=infer)"),
        (["model=bert", "runtime=mnn", "workload.precision=fp16"], "runs the fp32 export"),
        (["model=bert", "runtime=onnxruntime", "runtime.provider=rocm"], "Valid: cpu, cuda, tensorrt"),
        (["model=bert", "runtime=mnn", "runtime.provider=cuda"], "backend 'cpu' has none"),
        (["model=bert", "runtime=onnxruntime", "workload.inputs=device"], "Valid: workload.inputs=host"),
        (["model=bert", "runtime.provider=cuda"], "applies to runtime=onnxruntime|mnn"),
    ],
)
def test_what_a_runtime_cannot_do_is_refused_in_one_line(overrides, says):
    with pytest.raises(UsageError) as refused:
        _plan(*overrides)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_a_runtime_that_is_not_one_is_named_with_the_valid_ones():
    with pytest.raises(Exception, match="Valid: auto, mnn, onnxruntime, pytorch"):
        _plan("model=bert", "runtime=tensorrt")


def test_the_same_model_and_shape_pair_across_runtimes():
    torch_run = _run(1, 10.0, tags={"model": "resnet50", "runtime": "pytorch"})
    ort = _run(2, 25.0, tags={"model": "resnet50", "runtime": "onnxruntime"}, **EXPORT)
    other_shape = _run(
        3, 90.0, tags={"model": "resnet50", "runtime": "onnxruntime"}, **EXPORT, **{"workload.image_size": "64"}
    )
    sides = frozenset({"runtime"})
    [row] = compare_runs(Store([]), [torch_run], [ort, other_shape], 0.02, sides=sides).rows
    assert row.candidate_run_id == "r2" and 2.4 < row.ratio < 2.6
    # Runs logged before runtimes existed carry no runtime tag: their own framework ran them.
    old = _run(4, 10.0, tags={"model": "resnet50"})
    assert len(compare_runs(Store([]), [old], [ort], 0.02, sides=sides).rows) == 1
    # Within one runtime its knobs count: two opsets are two different exports.
    opset = _run(5, 20.0, tags={"model": "resnet50", "runtime": "onnxruntime"}, **{**EXPORT, "runtime.opset": "17"})
    assert not compare_runs(Store([]), [ort], [opset], 0.02, sides=frozenset({"label"})).rows


def test_a_conversion_mnn_cannot_do_fails_naming_the_operator(tmp_path):
    """An ONNX graph with an operator MNN's converter lacks (IsNaN), converted in a child process
    (the converter prints from C): a ConversionError that names it, and no .mnn file."""
    script = f"""
import json, onnx
from onnx import TensorProto, helper
from pathlib import Path
from runners.worker.frameworks.exported import Export
from runners.worker.frameworks.mnn_runtime import convert
d = Path({str(tmp_path)!r})
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
y = helper.make_tensor_value_info("y", TensorProto.BOOL, [2])
graph = helper.make_graph([helper.make_node("IsNaN", ["x"], ["y"])], "g", [x], [y])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), d / "model.onnx")
try:
    convert(Export(d, [{{"name": "x", "dtype": "float32", "shape": [2]}}], ["y"], 0))
except Exception as exc:
    print("RAISED", type(exc).__name__, exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "RAISED ConversionError MNN's converter could not convert" in done.stdout, done.stdout + done.stderr
    assert "IsNaN" in done.stdout.split("RAISED", 1)[1] and not (tmp_path / "model.mnn").exists()
