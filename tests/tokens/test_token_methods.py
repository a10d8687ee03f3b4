"""Methods on token embeddings, each against torch on the same weights: integrated gradients
(zeros and [MASK]-style token baselines, special tokens kept; completeness), SmoothGrad with the
noise the graph stores, all samples in one batched pass."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgesal import metadata
from edgesal.export import ExportOptions
from edgesal.methods.integrated import path_points
from edgesal.options import MethodOptions
from edgesal.tokens.export import TokenOptions, export_token_saliency
from tests.tokens.conftest import IDS, MASK, SEQ, feeds

CLASS = 2
SPECIAL = (0, 1, 2)  # [PAD] [CLS] [SEP]


def _run(path, method, tokens=None, **params):
    options = ExportOptions(
        method=method, target=f"class:{CLASS}", input="input_ids", input_shape=(1, SEQ),
        reduce="none", normalize="none", params=MethodOptions(**params),
    )  # fmt: skip
    model = export_token_saliency(path, options, tokens or TokenOptions())
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return model, session.run(["saliency"], feeds())[0]


def _score_and_grad(bert, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids, mask = torch.from_numpy(IDS), torch.from_numpy(MASK)
    w = torch.from_numpy(words.astype(np.float32)).requires_grad_(True)
    scores = bert(ids.expand(len(words), -1), mask.expand(len(words), -1),
                  torch.zeros_like(ids).expand(len(words), -1), w)  # fmt: skip
    scores[:, CLASS].sum().backward()
    return scores[:, CLASS].detach().numpy(), w.grad.numpy()


def _words(bert) -> np.ndarray:
    return bert.embeddings.word_embeddings(torch.from_numpy(IDS)).detach().numpy()


def _reference(bert, token: int | None) -> np.ndarray:
    x = _words(bert)
    fill = np.zeros_like(x) if token is None else np.broadcast_to(
        bert.embeddings.word_embeddings.weight[token].detach().numpy(), x.shape
    )  # fmt: skip
    keep = np.isin(IDS, SPECIAL)[..., None]
    return np.where(keep, x, fill)


def _torch_ig(bert, reference: np.ndarray, steps: int) -> np.ndarray:
    x = _words(bert)
    alphas, weights = path_points(steps, "gausslegendre")
    points = reference + alphas[:, None, None] * (x - reference)
    _, grads = _score_and_grad(bert, points)
    return (x - reference)[0] * np.tensordot(weights, grads, axes=1)


@pytest.mark.slow
def test_integrated_zeros_and_token_baselines(small_bert, small_bert_onnx):
    for token in (None, 3):
        tokens = TokenOptions(baseline_token=token, special_tokens=SPECIAL)
        model, got = _run(small_bert_onnx, "integrated", tokens, steps=16)
        reference = _reference(small_bert, token)
        np.testing.assert_allclose(got[0], _torch_ig(small_bert, reference, 16), atol=2e-5)
        assert np.all(got[0][np.isin(IDS[0], SPECIAL)] == 0)  # kept tokens: no path, no credit
        scores, _ = _score_and_grad(small_bert, np.concatenate([_words(small_bert), reference]))
        np.testing.assert_allclose(got.sum(), scores[0] - scores[1], rtol=2e-3)  # completeness
    assert metadata.read(model)["batching"]["mode"] != "sequential"  # one batched pass


def test_smoothgrad_on_embeddings(small_bert, small_bert_onnx):
    samples, sigma, seed = 4, 0.2, 3
    _, got = _run(small_bert_onnx, "smoothgrad", samples=samples, sigma=sigma, seed=seed)
    x = _words(small_bert)
    noise = np.random.default_rng(seed).standard_normal((samples, *x.shape[1:]))
    noisy = x + sigma * (x.max() - x.min()) * noise
    _, grads = _score_and_grad(small_bert, noisy.astype(np.float32))
    np.testing.assert_allclose(got[0], grads.mean(0), rtol=1e-4, atol=1e-6)


def test_transformers_batch_eight_samples_by_default(small_bert_onnx):
    """Without --max-batch a transformer runs IG points in chunks of 8 (measured fastest on
    MiniLM); a model without attention keeps chunks of 2 (tests/test_rebatch.py)."""
    model, _ = _run(small_bert_onnx, "integrated", steps=4)
    assert metadata.read(model)["batching"]["max_batch"] == 8
    model, _ = _run(small_bert_onnx, "integrated", steps=4, max_batch=2)
    assert metadata.read(model)["batching"]["max_batch"] == 2


def test_smooth_around_integrated_takes_any_batch(small_bert_onnx):
    """--smooth 3 around integrated on two sequences at once equals each sequence exported alone
    (the same noise per item), and special tokens get exactly 0 (their reference is the noisy
    copy itself)."""
    ids = np.concatenate([IDS, np.array([[1, 8, 6, 2, 0, 0, 0, 0]])]).astype(np.int64)
    mask = np.concatenate([MASK, np.array([[1, 1, 1, 1, 0, 0, 0, 0]])]).astype(np.int64)

    def export(n: int):
        options = ExportOptions(
            method="integrated", target=f"class:{CLASS}", input="input_ids",
            input_shape=(n, SEQ), reduce="none", normalize="none",
            params=MethodOptions(steps=4, smooth=3, sigma=0.2, baseline="token:3"),
        )  # fmt: skip
        model = export_token_saliency(
            small_bert_onnx, options, TokenOptions(special_tokens=SPECIAL)
        )
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    both = export(2).run(["saliency"], feeds(ids, mask))[0]
    alone = export(1)
    for i in range(2):
        single = alone.run(["saliency"], feeds(ids[i : i + 1], mask[i : i + 1]))[0]
        np.testing.assert_allclose(both[i], single[0], rtol=1e-5, atol=1e-7)
    special = np.isin(ids, SPECIAL)
    assert np.all(both[special] == 0) and np.abs(both[~special]).max() > 0
