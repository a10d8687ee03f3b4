"""Rebatching graphs that fix the batch (edgesal/graph/rebatch.py) and the sequential fallback.

One synthetic graph per constant pattern that carries the batch (Reshape sizes, a Concat'd shape,
Expand / ConstantOfShape / Resize sizes, a Slice over axis 0, a constant Concat operand); each
multi-sample export must equal the same export run one sample at a time (``max_batch=1``, the
unchanged graph), and say in its metadata which it used. Graphs with no exact rewrite, or whose
rewrite mixes samples, fall back to one sample at a time.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgesal import metadata
from edgesal.export import ExportOptions, export_saliency
from edgesal.graph.batched import chunk_sizes, copied_nodes
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo
from edgesal.graph.rebatch import NotRebatchable, check_rebatched, rebatch
from edgesal.methods import MethodOptions
from edgesal.methods.integrated import path_points

RAW = {"reduce": "none", "normalize": "none"}


def _graph(pattern: str, batch: int = 1) -> onnx.ModelProto:
    """x [B,3,8,8] -> Conv -> Relu -> PATTERN -> Flatten -> MatMul -> logits [B,5]."""
    rng = np.random.default_rng(7)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.4}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["h"]),
    ]
    b = batch
    if pattern == "reshape":  # tf2onnx's Reshape(x, [1, -1, k])
        inits["s"] = np.array([b, -1, 16], np.int64)
        nodes.append(helper.make_node("Reshape", ["h", "s"], ["p"]))
    elif pattern == "concat_shape":  # [B] ++ Shape(h)[1:], folded to a constant on export
        inits["one"] = np.array([b], np.int64)
        nodes += [
            helper.make_node("Shape", ["h"], ["hs"], start=1),
            helper.make_node("Concat", ["one", "hs"], ["s"], axis=0),
            helper.make_node("Reshape", ["h", "s"], ["p"]),
        ]
    elif pattern == "expand":  # squeeze-excite style gate broadcast to a fixed size
        inits.update(ax=np.array([2, 3], np.int64), s=np.array([b, 4, 8, 8], np.int64))
        nodes += [
            helper.make_node("ReduceMean", ["h", "ax"], ["g"]),
            helper.make_node("Expand", ["g", "s"], ["e"]),
            helper.make_node("Mul", ["h", "e"], ["p"]),
        ]
    elif pattern == "constant_concat":  # ConstantOfShape([B,2,8,8]) joined on channels
        inits["s"] = np.array([b, 2, 8, 8], np.int64)
        value = helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])
        nodes += [
            helper.make_node("ConstantOfShape", ["s"], ["z"], value=value),
            helper.make_node("Concat", ["h", "z"], ["p"], axis=1),
        ]
    elif pattern == "resize":  # upsampling by output sizes
        inits["s"] = np.array([b, 4, 16, 16], np.int64)
        nodes.append(helper.make_node("Resize", ["h", "", "", "s"], ["p"], mode="nearest"))
    elif pattern == "slice":  # StridedSlice with the batch's exact end
        inits.update(st=np.array([0, 1], np.int64), en=np.array([b, 4], np.int64))
        inits["axes"] = np.array([0, 1], np.int64)
        nodes.append(helper.make_node("Slice", ["h", "st", "en", "axes"], ["p"]))
    elif pattern == "tile":  # tiles inside each item: nothing to rewrite
        inits["r"] = np.array([1, 1, 2, 1], np.int64)
        nodes.append(helper.make_node("Tile", ["h", "r"], ["p"]))
    elif pattern == "merged":  # the batch folded into channels and back: no exact rewrite
        inits.update(s1=np.array([4 * b, 64], np.int64), s2=np.array([b, 256], np.int64))
        nodes += [
            helper.make_node("Reshape", ["h", "s1"], ["r"]),
            helper.make_node("Sigmoid", ["r"], ["sr"]),
            helper.make_node("Reshape", ["sr", "s2"], ["p"]),
        ]
    elif pattern == "mixing_free":  # the same on a free batch: nothing to rewrite, still mixed
        nodes += [
            helper.make_node("Softmax", ["h"], ["sm"], axis=0),
            helper.make_node("Mul", ["h", "sm"], ["p"]),
        ]
    elif pattern == "mixing":  # softmax over the batch axis: shapes fine, samples mixed
        inits["s"] = np.array([b, -1], np.int64)
        nodes += [
            helper.make_node("Softmax", ["h"], ["sm"], axis=0),
            helper.make_node("Mul", ["h", "sm"], ["m"]),
            helper.make_node("Reshape", ["m", "s"], ["p"]),
        ]
    nodes.append(helper.make_node("Flatten", ["p"], ["f"], axis=1))
    size = _flat_size(nodes, inits, b)
    inits["fc"] = (rng.standard_normal((size, 5)) / np.sqrt(size)).astype(np.float32)
    nodes.append(helper.make_node("MatMul", ["f", "fc"], ["logits"]))
    graph = helper.make_graph(
        nodes,
        pattern,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [b, 5])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _flat_size(nodes, inits, batch) -> int:
    partial = helper.make_model(
        helper.make_graph(
            nodes,
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
            [helper.make_tensor_value_info("f", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(v, k) for k, v in inits.items()],
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    return TensorInfo(partial).shape("f")[1]


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["saliency"], {"x": x})[0]


def _export(model, method: str, max_batch: int | None = 0, **params) -> onnx.ModelProto:
    options = MethodOptions(steps=4, samples=3, max_batch=max_batch, **params)
    return export_saliency(
        model, ExportOptions(method=method, target="class:2", params=options, **RAW)
    )


def _x(batch: int = 1) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((batch, 3, 8, 8)).astype(np.float32)


REWRITTEN = ["reshape", "concat_shape", "expand", "constant_concat", "resize", "slice"]


@pytest.mark.parametrize("pattern", REWRITTEN)
@pytest.mark.parametrize("method", ["integrated", "smoothgrad"])
def test_rebatched_equals_one_sample_at_a_time(pattern, method):
    model = _graph(pattern)
    batched = _export(model, method)
    sequential = _export(model, method, max_batch=1)
    used = metadata.read(batched)["batching"]
    assert used["mode"] == "rebatched", used
    assert used["rewrites"], used
    assert metadata.read(sequential)["batching"]["mode"] == "batch"  # chunks of 1 need no rewrite
    x = _x()
    np.testing.assert_allclose(_run(batched, x), _run(sequential, x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pattern", REWRITTEN)
def test_rebatched_with_two_items_per_batch(pattern):
    model = _graph(pattern, batch=2)
    batched, sequential = _export(model, "integrated"), _export(model, "integrated", max_batch=1)
    assert metadata.read(batched)["batching"]["mode"] == "rebatched"
    x = _x(2)
    np.testing.assert_allclose(_run(batched, x), _run(sequential, x), rtol=1e-4, atol=1e-6)


def test_tile_inside_items_needs_no_rewrite():
    used = metadata.read(_export(_graph("tile"), "integrated"))["batching"]
    assert used == {"mode": "batch", "max_batch": 0, "rewrites": [], "checked": 0.0}


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("merged", "moves the batch"),
        ("mixing", "mixes items of a batch"),
        ("mixing_free", "mixes items of a batch"),
    ],
)
def test_no_exact_rewrite_falls_back_to_one_sample_at_a_time(pattern, reason):
    model = _graph(pattern)
    exported = _export(model, "integrated")
    used = metadata.read(exported)["batching"]
    assert used["mode"] == "sequential" and reason in used["reason"], used
    # the fallback equals IG written out by hand: vanilla exports at each path point

    x = _x()
    alphas, weights = path_points(4, "gausslegendre")
    vanilla = export_saliency(model, ExportOptions(method="vanilla", target="class:2", **RAW))
    expected = x * sum(
        w * _run(vanilla, (a * x).astype(np.float32)) for a, w in zip(alphas, weights, strict=True)
    )
    np.testing.assert_allclose(_run(exported, x), expected, rtol=1e-4, atol=1e-6)


def test_rebatch_rewrites_a_concat_shape_before_folding():
    """Unfolded: the Concat's constant piece [1] is what carries the batch."""
    model = _graph("concat_shape")
    info = TensorInfo(model)
    b = Builder(model.graph, 18, prefix="edgesal")
    copy = copied_nodes(model.graph, "x", "xs", {"logits"}, "edgesal/samples3")
    done = rebatch(copy, info, b, 1, 3)
    assert len(done) == 1 and done[0].startswith("Concat"), done
    model.graph.node.extend(copy.copies)
    model.graph.input.append(helper.make_tensor_value_info("xs", TensorProto.FLOAT, [3, 3, 8, 8]))
    check_rebatched(model, "x", "xs", {"logits": copy.mapping["logits"]}, 1, 3)


def test_check_rebatched_catches_mixed_samples():
    model = _graph("mixing")
    info = TensorInfo(model)
    b = Builder(model.graph, 18, prefix="edgesal")
    copy = copied_nodes(model.graph, "x", "xs", {"logits"}, "edgesal/samples2")
    assert rebatch(copy, info, b, 1, 2)
    model.graph.node.extend(copy.copies)
    model.graph.input.append(helper.make_tensor_value_info("xs", TensorProto.FLOAT, [2, 3, 8, 8]))
    with pytest.raises(NotRebatchable, match="mixes items"):
        check_rebatched(model, "x", "xs", {"logits": copy.mapping["logits"]}, 1, 2)


@pytest.mark.parametrize("max_batch", [2, 3])
def test_chunks_equal_one_batch(max_batch):
    model = _graph("reshape")
    whole, chunked = _export(model, "integrated"), _export(model, "integrated", max_batch=max_batch)
    assert metadata.read(chunked)["batching"]["max_batch"] == max_batch
    x = _x()
    np.testing.assert_allclose(_run(whole, x), _run(chunked, x), rtol=1e-4, atol=1e-6)


def test_chunk_sizes_are_balanced():
    assert chunk_sizes(16, 0) == [16]
    assert chunk_sizes(16, 16) == [16]
    assert chunk_sizes(16, 6) == [6, 5, 5]
    assert chunk_sizes(8, 1) == [1] * 8


def test_smooth_around_gradcam_one_batch_equals_one_at_a_time():
    model, x = _graph("tile"), _x()
    maps = [_run(_export(model, "gradcam", max_batch=k, smooth=3, layer="h"), x) for k in (0, 1)]
    np.testing.assert_allclose(maps[0], maps[1], rtol=1e-4, atol=1e-6)


def test_smooth_around_gradcam_falls_back_too():
    model = _graph("merged")
    options = MethodOptions(smooth=3, max_batch=0, layer="h")
    exported = export_saliency(
        model, ExportOptions(method="gradcam", target="class:2", params=options, **RAW)
    )
    assert metadata.read(exported)["batching"]["mode"] == "sequential"
    assert _run(exported, _x()).shape == (1, 1, 8, 8)


def test_cli_max_batch_reaches_the_metadata(tmp_path):
    from edgesal.cli import main

    source, out = tmp_path / "m.onnx", tmp_path / "m.sal.onnx"
    onnx.save(_graph("reshape"), str(source))
    argv = ["export", str(source), "-o", str(out), "--method", "smoothgrad", "--samples", "4"]
    assert main([*argv, "--max-batch", "2", "--target", "class:1"]) == 0
    used = metadata.read(onnx.load(str(out)))["batching"]
    assert (used["mode"], used["max_batch"]) == ("rebatched", 2)


def test_models_without_attention_default_to_chunks_of_two():
    model = _export(_graph("reshape"), "integrated", max_batch=None)
    assert metadata.read(model)["batching"]["max_batch"] == 2
