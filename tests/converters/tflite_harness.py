"""Small ONNX graphs through ``to_tflite`` and ai-edge-litert, compared with onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import tflite
from onnx import helper, numpy_helper

from edgesal.converters.tflite.convert import to_tflite
from edgesal.converters.tflite.verify import relative_error, tflite_feeds

OPSET = 17


@dataclass
class Graph:
    """Nodes over run-time ``inputs`` and constant ``consts``; ``outputs`` are compared."""

    nodes: list[onnx.NodeProto]
    inputs: dict[str, np.ndarray]
    outputs: list[str]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    id: str = ""
    tol: float = 1e-5

    def model(self) -> onnx.ModelProto:
        values = [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for n, v in self.inputs.items()
        ]
        inits = [numpy_helper.from_array(v, n) for n, v in self.consts.items()]
        graph = helper.make_graph(self.nodes, self.id or "case", values, [], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        typed = {v.name: v for v in inferred.graph.value_info}
        model.graph.output.extend(typed[o] for o in self.outputs)
        return model


def interpreter(data: bytes, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=threads)
    it.allocate_tensors()
    return it


def operator_names(data: bytes) -> list[str]:
    """Every operator of the flatbuffer by its BuiltinOperator name (CUSTOM for custom ops)."""
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    model = tflite.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    result = []
    for i in range(graph.OperatorsLength()):
        code = codes[graph.Operators(i).OpcodeIndex()]
        if code.CustomCode():
            result.append("CUSTOM")
        else:
            result.append(names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
    return result


def check_graph(case: Graph) -> list[str]:
    """Assert TFLite equals onnxruntime on ``case``; returns the TFLite operator names."""
    model = case.model()
    data = to_tflite(model)
    ops = operator_names(data)
    assert "CUSTOM" not in ops and "DELEGATE" not in ops
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(case.outputs, case.inputs)
    it = interpreter(data)
    got = it.get_signature_runner()(**tflite_feeds(it.get_input_details(), case.inputs))
    assert sorted(got) == sorted(case.outputs)
    for name, want in zip(case.outputs, expected, strict=True):
        have = got[name]
        assert have.shape == want.shape, (case.id, name, have.shape, want.shape)
        if want.dtype.kind in "biu":
            np.testing.assert_array_equal(have, want, err_msg=f"{case.id}: {name}")
        else:
            err = relative_error(have, want)
            assert err <= case.tol, f"{case.id}: {name} differs by {err:.2e} of its range"
    return ops
