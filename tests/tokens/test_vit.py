"""A small vision transformer (torch, fixed random weights; no PyPI package ships ViT/DeiT
weights we could find): the generic token path, ``--wrt`` the patch tokens with ``--attention``,
gives per-patch gradients and attention maps equal to torch's."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from edgesal.export import ExportOptions
from edgesal.tokens.export import TokenOptions, export_token_saliency
from tests.tokens.bert import BertConfig, Layer

PATCH, SIZE, WIDTH = 8, 32, 16


class TinyViT(nn.Module):
    """Patch embedding (a Conv whose stride equals its kernel), a class token, 2 layers."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        c = BertConfig(hidden=WIDTH, heads=2, intermediate=32)
        self.patches = nn.Conv2d(3, WIDTH, PATCH, stride=PATCH)
        self.cls = nn.Parameter(torch.randn(1, 1, WIDTH))
        self.pos = nn.Parameter(0.5 * torch.randn(1, 1 + (SIZE // PATCH) ** 2, WIDTH))
        self.layer = nn.ModuleList(Layer(c) for _ in range(2))
        self.head = nn.Linear(WIDTH, 4)
        self.tokens = None

    def forward(self, image):
        x = self.patches(image).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        self.tokens = x
        for layer in self.layer:
            x = layer(x, torch.zeros(()))
        return self.head(x[:, 0])


def test_vit_patch_tokens_and_attention(tmp_path):
    vit = TinyViT().eval()
    image = torch.randn(1, 3, SIZE, SIZE)
    path = tmp_path / "vit.onnx"
    torch.onnx.export(vit, (image,), str(path), input_names=["image"], output_names=["scores"],
                      opset_version=17, dynamo=False)  # fmt: skip
    graph = onnx.load(str(path)).graph
    tokens = next(n.output[0] for n in graph.node if n.op_type == "Add" and "pos" in n.input)
    options = ExportOptions(target="class:2", reduce="none", normalize="none")
    model = export_token_saliency(path, options, TokenOptions(wrt=tokens, attention=True))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"image": image.numpy()}), strict=True))

    scores = vit(image)
    vit.tokens.retain_grad()
    probs = [layer.probs for layer in vit.layer]
    scores[0, 2].backward()
    np.testing.assert_allclose(out["saliency"], vit.tokens.grad.numpy(), rtol=1e-4, atol=1e-6)
    expected = np.stack([p.detach().numpy().mean(1) for p in probs], 1)
    np.testing.assert_allclose(out["attention"], expected, atol=1e-5)
    assert out["attention_rollout"].shape == (1, 1 + (SIZE // PATCH) ** 2)


def test_vit_patch_map(tmp_path):
    """--patch-map: the per-patch l2 map of the tokens after the class token, on the 4x4 grid."""
    vit = TinyViT().eval()
    image = torch.randn(1, 3, SIZE, SIZE)
    path = tmp_path / "vit.onnx"
    torch.onnx.export(vit, (image,), str(path), input_names=["image"], output_names=["scores"],
                      opset_version=17, dynamo=False)  # fmt: skip
    graph = onnx.load(str(path)).graph
    tokens = next(n.output[0] for n in graph.node if n.op_type == "Add" and "pos" in n.input)
    options = ExportOptions(target="class:1", reduce="l2", normalize="none")
    spec = TokenOptions(wrt=tokens, attention=True, patch_map=True)
    model = export_token_saliency(path, options, spec)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"image": image.numpy()}), strict=True))
    grid = SIZE // PATCH
    assert out["saliency_grid"].shape == out["attention_rollout_grid"].shape == (1, grid, grid)
    scores = vit(image)
    vit.tokens.retain_grad()
    scores[0, 1].backward()
    per_token = np.sqrt((vit.tokens.grad.numpy()[0] ** 2).sum(-1))
    expected = per_token[1:].reshape(grid, grid)  # patch (row, col) = token 1 + row * grid + col
    np.testing.assert_allclose(out["saliency_grid"][0], expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out["attention_gradient_grid"][0].reshape(-1),
                               out["attention_gradient"][0, 1:])  # fmt: skip
