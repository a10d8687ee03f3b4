"""Bad input gets a clear error naming the problem; never a deep traceback or a wrong map."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgesal.cli import main
from edgesal.errors import InputError, ModelLoadError, TargetError, UnsupportedOpError
from edgesal.export import ExportOptions, export_saliency
from edgesal.export.targets import Target, build_seed
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo
from tests.models import nchw_cnn


def _single(op, inputs, outputs, inits=(), **attrs) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, [i.name for i in inputs], ["y"], **attrs)],
        "g",
        inputs,
        outputs,
        list(inits),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unsupported_op_names_op_node_and_supported_list():
    model = nchw_cnn()
    node = helper.make_node("Hardmax", ["logits"], ["hm"], name="my_hardmax")
    model.graph.node.append(node)
    model.graph.output[0].name = "hm"
    with pytest.raises(UnsupportedOpError) as err:
        export_saliency(model, ExportOptions())
    text = str(err.value)
    assert "Hardmax" in text and "my_hardmax" in text and "Conv" in text


def test_custom_domain_op_is_named():
    model = nchw_cnn()
    for node in model.graph.node:
        if node.op_type == "Relu":
            node.domain, node.op_type, node.name = "com.example", "FancyAct", "fancy_1"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedOpError, match="FancyAct.*fancy_1"):
        export_saliency(model, ExportOptions())


def test_no_float_input():
    x = helper.make_tensor_value_info("x", TensorProto.INT64, [1, 10])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [1, 10])
    with pytest.raises(InputError, match="no float input to explain; inputs: x int64"):
        export_saliency(_single("Neg", [x], [y]), ExportOptions())


def test_class_out_of_range():
    with pytest.raises(TargetError, match="index 9 is out of range.*5 classes"):
        export_saliency(nchw_cnn(classes=5), ExportOptions(target="class:9"))


@pytest.mark.parametrize("spec", ["class:-1", "klass:3", "output:logits:median", "output:"])
def test_malformed_target(spec):
    with pytest.raises(TargetError):
        export_saliency(nchw_cnn(), ExportOptions(target=spec))


def test_index_target_without_an_index_is_named():
    """A Target built in code (not parsed from --target) that asks for an index but has none."""
    model = nchw_cnn()
    with pytest.raises(TargetError, match="no index to explain"):
        build_seed(
            Target("class", reduction="index"), model, TensorInfo(model), Builder(model.graph, 13)
        )


def test_output_target_must_exist():
    with pytest.raises(TargetError, match="no tensor named 'boxes'"):
        export_saliency(nchw_cnn(), ExportOptions(target="output:boxes:max"))


def test_integer_only_input():
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 8, 8, 3])
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 8, 8, 3])
    with pytest.raises(InputError, match="'x' is uint8 and is never cast to float"):
        export_saliency(_single("Identity", [x], [y]), ExportOptions())


def test_uint8_input_with_cast_is_differentiated_after_the_cast():
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 4, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 3])
    scale = numpy_helper.from_array(np.arange(48, dtype=np.float32).reshape(1, 4, 4, 3), "s")
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["xf", "s"], ["y"]),
        ],
        "g",
        [x],
        [y],
        [scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    exported = export_saliency(model, ExportOptions(target="output:y:47", normalize="none"))
    import onnxruntime as ort

    sess = ort.InferenceSession(exported.SerializeToString())
    sal = sess.run(None, {"x": np.zeros((1, 4, 4, 3), np.uint8)})[1]
    assert sal.shape == (1, 4, 4) and sal[0, 3, 3] == 47 and np.count_nonzero(sal) == 1


def test_dynamic_batch_is_fixed_to_one_by_default_and_to_batch_flag():
    model = nchw_cnn(batch="N")
    exported = export_saliency(model, ExportOptions())
    dims = exported.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1
    exported = export_saliency(model, ExportOptions(batch=4))
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4


def test_dynamic_spatial_dims_need_input_shape():
    model = nchw_cnn()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].Clear()
    dims[2].dim_param = "H"
    with pytest.raises(InputError, match="--input-shape"):
        export_saliency(model, ExportOptions())
    exported = export_saliency(model, ExportOptions(input_shape=(1, 3, 16, 16)))
    assert exported.graph.input[0].type.tensor_type.shape.dim[2].dim_value == 16


def test_corrupt_and_non_onnx_files(tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(ModelLoadError, match="missing.onnx: no such file"):
        export_saliency(missing, ExportOptions())
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(nchw_cnn().SerializeToString()[:200])
    with pytest.raises(ModelLoadError, match="corrupt.onnx"):
        export_saliency(corrupt, ExportOptions())
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 10)
    with pytest.raises(ModelLoadError, match="notes.onnx"):
        export_saliency(text, ExportOptions())
    tflite = tmp_path / "model.onnx"
    tflite.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="TFLite flatbuffer"):
        export_saliency(tflite, ExportOptions())


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(nchw_cnn(classes=5), str(path))
    code = main(["export", str(path), "-o", str(tmp_path / "o.onnx"), "--target", "class:7"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("edgesal: error:") and "out of range" in err and "Traceback" not in err


def test_cli_export_writes_model(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(nchw_cnn(), str(path))
    assert main(["export", str(path), "-o", str(tmp_path / "o.onnx")]) == 0
    assert "saliency" in [o.name for o in onnx.load(str(tmp_path / "o.onnx")).graph.output]


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["export", "--help"],
        ["zoo", "--help"],
        ["zoo", "build", "--help"],
        ["bench", "--help"],
        ["demo", "--help"],
        ["info", "--help"],
        ["ops", "--help"],
    ],
)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(command)
    assert exit_.value.code == 0
    assert "usage: edgesal" in capsys.readouterr().out
