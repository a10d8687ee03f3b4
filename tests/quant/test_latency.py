"""Per-node kernel times: onnxruntime's profiled kernels credited to the graph's nodes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from edgesal.quant import latency
from edgesal.quant.prepare import prepare
from tests.quant.conftest import SIZE


def _chain():
    """Conv -> BatchNormalization -> Clip -> Add, as onnxruntime fuses them into one kernel."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("Clip", ["n", "lo", "hi"], ["r"], name="clip"),
        helper.make_node("Add", ["r", "x"], ["a"], name="add"),
    ]
    producers = {out: n for n in nodes for out in n.output}
    return {n.name for n in nodes}, producers


@pytest.mark.parametrize(
    ("profiled", "op", "owner"),
    [
        ("bn", "BatchNormalization", "bn"),  # named after the node: that node
        ("conv", "FusedConv", "conv"),  # Conv fused with its activation keeps the Conv's name
        ("r", "Conv", "conv"),  # NCHWc: named after the Clip's output, headed by the Conv
        ("c", "Conv", "conv"),
        ("a", "Conv", "conv"),  # Conv + BN + Clip + Add in one kernel
        ("n", "BatchNormalization", "bn"),
        ("r", "Relu", "clip"),  # no node of the kernel's type upstream: the tensor's writer
        ("ReorderOutput", "ReorderOutput", "(runtime-inserted)"),
    ],
)
def test_profiled_kernel_owner(profiled, op, owner):
    names, producers = _chain()
    assert latency._owner(profiled, op, names, producers) == owner


def test_float_and_int8_convs_are_profiled_under_their_nodes(tiny_saliency):
    """Every Conv runs a kernel, fused or re-laid out (NCHWc) or not: none reads as 0 ms."""
    model = prepare(tiny_saliency["vanilla"])
    feed = {"image": np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE), np.float32)}
    times = latency.node_times(model, feed, runs=2)
    names = {n.name for n in model.graph.node}
    assert set(times) <= names | {"(runtime-inserted)"}
    convs = [n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert len(convs) >= 6
    for name in convs:
        assert times.get(name, 0.0) > 0.0, name
