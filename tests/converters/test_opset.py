"""ONNX pass-through at the requested opset: upgraded by the ONNX version converter, never down
(the CLI side is in tests/test_cli.py)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgesal import converters, onnx_io
from edgesal.errors import InputError
from edgesal.onnx_io import at_opset, default_opset
from tests.models import nchw_cnn


def opset11_cnn() -> onnx.ModelProto:
    model = nchw_cnn()
    model.opset_import[0].version = 11
    model.ir_version = 6
    onnx.checker.check_model(model, full_check=True)
    return model


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def test_convert_honours_opset_for_onnx(tmp_path):
    source = opset11_cnn()
    path = tmp_path / "old.onnx"
    onnx.save(source, path)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    for given in (path, source):
        model = converters.convert(given, opset=17)
        assert default_opset(model) == 17
        np.testing.assert_allclose(run(model, x), run(source, x), rtol=1e-5, atol=1e-6)
    # no opset asked for: the model keeps its own, raised to the gradient rules' floor
    assert default_opset(converters.convert(path)) == 13
    assert default_opset(converters.convert(nchw_cnn())) == 17


def test_downgrade_is_refused_naming_file_and_opsets(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(nchw_cnn(), path)
    with pytest.raises(InputError, match=r"m\.onnx: cannot convert the model from opset 17 to "):
        converters.convert(path, opset=15)
    with pytest.raises(InputError, match=r"^ONNX model: .* from opset 17 to opset 15: converting"):
        converters.convert(nchw_cnn(), opset=15)


def test_unknown_operator_is_an_input_error():
    """An operator the version converter has no schema for (the experimental ImageScaler),
    named instead of onnx's assertion text."""
    node = helper.make_node("ImageScaler", ["image"], ["y"], name="scale", scale=2.0)
    value = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    graph = helper.make_graph([node], "g", [value], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    with pytest.raises(
        InputError,
        match=r"^odd\.onnx: cannot convert the model from opset 9 to opset 17: operators unknown "
        r"to onnx: ImageScaler \(node 'scale'\)$",
    ):
        at_opset(model, 17, "odd.onnx")


def test_version_converter_failure_is_an_input_error(monkeypatch):
    """A conversion the ONNX version converter gives up on: its reason, without the C++
    assertion around it, after the file and both opsets."""

    def give_up(model, target):
        raise RuntimeError(
            "convert.h:96: adapter_lookup: Assertion `false` failed: No Adapter To Version $13 "
            "for Clip"
        )

    monkeypatch.setattr(onnx_io.version_converter, "convert_version", give_up)
    with pytest.raises(
        InputError,
        match=r"^old\.onnx: cannot convert the model from opset 11 to opset 17: "
        r"No Adapter To Version \$13 for Clip$",
    ):
        at_opset(opset11_cnn(), 17, "old.onnx")
