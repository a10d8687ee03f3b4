"""Token saliency and attention against torch autograd on the same weights, float64 finite
differences, and the Softmax values the original graph computes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgesal.errors import InputError
from edgesal.export import ExportOptions
from edgesal.options import MethodOptions
from edgesal.tokens.export import TokenOptions, export_token_saliency
from tests.tokens.conftest import IDS, MASK, SEQ, feeds

CLASS = 1


def _export(path, method="vanilla", reduce="none", normalize="none", tokens=None, **params):
    options = ExportOptions(
        method=method, target=f"class:{CLASS}", input="input_ids", input_shape=(1, SEQ),
        reduce=reduce, normalize=normalize, params=MethodOptions(**params),
    )  # fmt: skip
    model = export_token_saliency(path, options, tokens or TokenOptions())
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return model, dict(zip(names, session.run(None, feeds()), strict=True))


def _torch_grad(bert, dtype=torch.float32):
    """dS/d(word embeddings) and the per-layer probabilities and their gradients."""
    model = bert.to(dtype)
    ids, mask = torch.from_numpy(IDS), torch.from_numpy(MASK)
    words = model.embeddings.word_embeddings(ids).detach().requires_grad_(True)
    scores = model(ids, mask, torch.zeros_like(ids), words)
    probs = [layer.probs for layer in model.layer]
    for p in probs:
        p.retain_grad()
    scores[0, CLASS].backward()
    result = words.grad.numpy(), words.detach().numpy(), [p.detach().numpy() for p in probs]
    grads = [p.grad.numpy() for p in probs]
    model.to(torch.float32)
    return (*result, grads)


def test_vanilla_equals_torch_autograd(small_bert, small_bert_onnx):
    _, out = _export(small_bert_onnx)
    grad, _, _, _ = _torch_grad(small_bert)
    np.testing.assert_allclose(out["saliency"], grad, rtol=1e-4, atol=1e-6)


def test_vanilla_matches_float64_finite_differences(small_bert, small_bert_onnx):
    """<grad, t> == (S(x + eps t) - S(x - eps t)) / 2 eps on the float64 torch model."""
    _, out = _export(small_bert_onnx)
    model = small_bert.double()
    ids, mask = torch.from_numpy(IDS), torch.from_numpy(MASK)
    words = model.embeddings.word_embeddings(ids).detach()
    rng = np.random.default_rng(0)
    eps = 1e-6
    try:
        for _ in range(3):
            t = torch.from_numpy(rng.standard_normal(words.shape))
            with torch.no_grad():
                up = model(ids, mask, torch.zeros_like(ids), words + eps * t)[0, CLASS]
                down = model(ids, mask, torch.zeros_like(ids), words - eps * t)[0, CLASS]
            numeric = float(up - down) / (2 * eps)
            analytic = float((out["saliency"] * t.numpy()).sum())
            assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-6)
    finally:
        model.float()


@pytest.mark.parametrize("reduce", ["l2", "absmax", "abssum", "dot"])
def test_reductions_mask_and_normalize(small_bert, small_bert_onnx, reduce):
    _, out = _export(small_bert_onnx, reduce=reduce, normalize="max")
    grad, words, _, _ = _torch_grad(small_bert)
    per_token = {
        "l2": np.sqrt((grad**2).sum(-1)),
        "absmax": np.abs(grad).max(-1),
        "abssum": np.abs(grad).sum(-1),
        "dot": (grad * words).sum(-1),
    }[reduce] * MASK
    expected = per_token / np.abs(per_token).max()
    assert out["saliency"].shape == (1, SEQ)
    np.testing.assert_allclose(out["saliency"], expected, rtol=1e-4, atol=1e-5)
    assert np.all(out["saliency"][MASK == 0] == 0)


def test_gradxinput_dot_equals_vanilla_dot(small_bert_onnx):
    _, plain = _export(small_bert_onnx, reduce="dot")
    _, gxi = _export(small_bert_onnx, method="gradxinput", reduce="dot")
    np.testing.assert_allclose(plain["saliency"], gxi["saliency"], rtol=1e-5, atol=1e-7)


def test_attention_equals_graph_softmax_and_torch(small_bert, small_bert_onnx):
    model, out = _export(small_bert_onnx, tokens=TokenOptions(attention=True))
    original = onnx.load(str(small_bert_onnx))
    softmax = [n.output[0] for n in original.graph.node if n.op_type == "Softmax"]
    for name in softmax:
        original.graph.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
    session = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    probs = session.run(softmax, feeds())
    expected = np.stack([p.mean(1) for p in probs], axis=1)
    np.testing.assert_allclose(out["attention"], expected, rtol=1e-5, atol=1e-6)
    _, _, torch_probs, _ = _torch_grad(small_bert)
    np.testing.assert_allclose(
        out["attention"], np.stack([p.mean(1) for p in torch_probs], 1), atol=1e-5
    )
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["edgesal.modality"] == "tokens"
    assert meta["edgesal.wrt"] == next(
        n.output[0] for n in original.graph.node if n.op_type == "Gather"
        and n.input[1] == "input_ids"
    )  # fmt: skip


def _rollout_row(mats, how):
    """Abnar & Zuidema 2020 by the published definition, in numpy."""
    result = np.eye(SEQ)
    for a in mats:
        step = a + np.eye(SEQ)
        step = step / step.sum(-1, keepdims=True)
        result = step @ result
    return result


def _expected_rows(matrix, how):
    if how == "cls":
        row = matrix[0]
    else:
        row = (matrix * MASK[0][:, None]).sum(0) / MASK.sum()
    row = row * MASK[0]
    return row / row.max()


@pytest.mark.parametrize("how", ["cls", "mean"])
def test_rollout_and_attention_gradient(small_bert, small_bert_onnx, how):
    _, out = _export(small_bert_onnx, tokens=TokenOptions(attention=True, rollout_from=how))
    _, _, probs, grads = _torch_grad(small_bert)
    rollout = _rollout_row([p[0].mean(0) for p in probs], how)
    np.testing.assert_allclose(out["attention_rollout"][0], _expected_rows(rollout, how), atol=1e-5)
    relevance = np.eye(SEQ)
    for p, g in zip(probs, grads, strict=True):  # Chefer et al. 2021, Eq. 13-14
        relevance = relevance + np.maximum(g[0] * p[0], 0).mean(0) @ relevance
    expected = _expected_rows(relevance - np.eye(SEQ), how)
    np.testing.assert_allclose(out["attention_gradient"][0], expected, atol=1e-5)


def test_wrt_any_float_tensor(small_bert, small_bert_onnx):
    """--wrt the embedding LayerNorm output: the gradient torch gives for that tensor."""
    original = onnx.load(str(small_bert_onnx))
    norm = next(n.output[0] for n in original.graph.node if n.op_type == "LayerNormalization")
    _, out = _export(small_bert_onnx, tokens=TokenOptions(wrt=norm))
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["x"] = output

    handle = small_bert.embeddings.LayerNorm.register_forward_hook(keep)
    try:
        ids, mask = torch.from_numpy(IDS), torch.from_numpy(MASK)
        small_bert(ids, mask, torch.zeros_like(ids))[0, CLASS].backward()
    finally:
        handle.remove()
    np.testing.assert_allclose(out["saliency"], captured["x"].grad.numpy(), rtol=1e-4, atol=1e-6)


def test_ids_without_lookup_are_refused(small_bert_onnx):
    options = ExportOptions(input="attention_mask", input_shape=(1, SEQ))
    with pytest.raises(InputError, match="no embedding lookup found for input 'attention_mask'; "
                       "pass --wrt TENSOR"):  # fmt: skip
        export_token_saliency(small_bert_onnx, options, TokenOptions())


def test_sequence_longer_than_position_table(small_bert_onnx):
    options = ExportOptions(input="input_ids", input_shape=(1, 30))
    with pytest.raises(InputError, match="sequence length 30 exceeds the position table"):
        export_token_saliency(small_bert_onnx, options, TokenOptions())


def test_symbolic_length_needs_input_shape(small_bert_onnx):
    with pytest.raises(InputError, match="--input-shape N,T"):
        export_token_saliency(small_bert_onnx, ExportOptions(input="input_ids"), TokenOptions())


def test_image_methods_refused_on_tokens(small_bert_onnx):
    options = ExportOptions(method="gradcam", input="input_ids", input_shape=(1, SEQ))
    with pytest.raises(InputError, match="--method gradcam: token inputs take"):
        export_token_saliency(small_bert_onnx, options, TokenOptions())


def test_no_input_and_no_wrt_is_refused(small_bert_onnx):
    """Called directly (the CLI routes here only with --wrt or an integer --input)."""
    with pytest.raises(InputError, match="--input: name the token ids input, or give --wrt"):
        export_token_saliency(small_bert_onnx, ExportOptions(input_shape=(1, SEQ)), TokenOptions())
