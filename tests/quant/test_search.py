"""The simulator against real QDQ models, and the float-node search on a known error model."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgesal.eval.similarity import spearman
from edgesal.quant import calibrate, qdq
from edgesal.quant.graph import describe
from edgesal.quant.mixed import Score, SearchOptions, blocks_of, search
from edgesal.quant.options import Budget
from edgesal.quant.prepare import prepare
from edgesal.quant.simulate import Simulator
from tests.quant.conftest import SIZE


def _inputs(count):
    rng = np.random.default_rng(5)
    return [rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32) for _ in range(count)]


@pytest.fixture(scope="module")
def quantized(tiny_saliency):
    """(prepared float model, all-int8 QDQ model) of the tiny vanilla saliency model."""
    prepared = prepare(tiny_saliency["vanilla"])
    graph = describe(prepared)
    stats = calibrate.collect(prepared, graph, [{"image": x} for x in _inputs(6)])
    return prepared, qdq.build(prepared, calibrate.choose_ranges(stats, graph))


def _saliency(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["saliency"], {"image": x})[0]


def test_simulator_spans_float_to_int8(quantized):
    prepared, int8 = quantized
    sim = Simulator(int8, prepared)
    assert set(sim.units) == qdq.quantized_nodes(int8) and "Conv:c1" in sim.units
    for x in _inputs(3):
        as_float = sim.run({"image": x}, [])["saliency"]
        np.testing.assert_allclose(as_float, _saliency(prepared, x), atol=1e-5)
        as_int8 = sim.run({"image": x}, sim.units)["saliency"]
        real = _saliency(int8, x)
        assert np.abs(as_int8 - real).max() < 0.05 and spearman(as_int8, real) > 0.97


def test_qdq_model_is_default_domain_with_int8_weights(quantized):
    _, int8 = quantized
    assert {n.domain for n in int8.graph.node} <= {"", "ai.onnx"}
    ops = {n.op_type for n in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in int8.graph.initializer if t.data_type == 3]  # INT8
    assert len(int8_weights) >= 4


def test_kept_nodes_stay_float(quantized):
    prepared, int8 = quantized
    graph = describe(prepared)
    stats = calibrate.collect(prepared, graph, [{"image": x} for x in _inputs(2)])
    partly = qdq.build(prepared, calibrate.choose_ranges(stats, graph), kept=["Conv:c1"])
    assert "Conv:c1" not in qdq.quantized_nodes(partly)
    assert "Conv:c1" in qdq.quantized_nodes(int8)


UNITS = [f"f{i}" for i in range(12)] + [f"b{i}" for i in range(12)]
BACKWARD = {u for u in UNITS if u.startswith("b")}


def _error_model(bad: dict[str, float]):
    """Spearman drops by ``bad[u]`` for each harmful unit in int8; others cost 0.001."""

    def evaluate(quantized: set[str]) -> Score:
        drop = sum(bad.get(u, 0.001) for u in quantized)
        return Score(1.0 - drop, 1.0 - drop)

    return evaluate


def test_all_int8_when_the_budget_holds():
    decision = search(UNITS, BACKWARD, _error_model({}), Budget(0.9, 0.7))
    assert decision.kept == [] and decision.all_int8.spearman > 0.97
    assert len(decision.blocks) == 16  # 8 per region, each measured


def test_search_keeps_the_harmful_nodes_and_gives_the_rest_back():
    bad = {"f3": 0.06, "f4": 0.06, "b9": 0.08}  # each alone breaks 0.9 + margin
    decision = search(UNITS, BACKWARD, _error_model(bad), Budget(0.9, 0.7), SearchOptions())
    assert set(bad) <= set(decision.kept) and len(decision.kept) <= 4
    assert decision.chosen.spearman >= 0.92  # budget plus the margin
    assert all(decision.reasons[n] for n in decision.kept)


def test_blocks_are_contiguous_per_region():
    blocks = blocks_of(UNITS, BACKWARD, 5)
    assert [b.region for b in blocks] == ["forward"] * 5 + ["backward"] * 5
    assert [n for b in blocks for n in b.nodes] == UNITS


def test_onnxruntime_runs_int8_kernels(quantized, tmp_path):
    """The QDQ groups are fused into onnxruntime's integer kernels, not run as float."""
    import json

    _, int8 = quantized
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    sess = ort.InferenceSession(int8.SerializeToString(), options, ["CPUExecutionProvider"])
    sess.run(None, {"image": _inputs(1)[0]})
    events = json.loads(open(sess.end_profiling()).read())
    kernels = {e["args"].get("op_name") for e in events if e.get("cat") == "Node"}
    assert {"QLinearConv", "QLinearMul"} <= kernels


def test_flips_count_only_for_clear_decisions():
    from edgesal.quant.mixed import clear_decision, score_outputs

    assert clear_decision(np.array([3.0, 1.0, 0.0])) and not clear_decision(np.array([3.0, 2.5]))
    same = np.arange(16.0).reshape(4, 4)
    clear, near = np.array([[5.0, 1.0]]), np.array([[5.0, 4.9]])
    flipped = score_outputs([(clear, same)], [(clear[:, ::-1], same)])
    assert flipped.flips == 1 and not flipped.acceptable(Budget())
    tie = score_outputs([(near, same)], [(near[:, ::-1], same)])
    assert tie.flips == 0 and tie.acceptable(Budget())
