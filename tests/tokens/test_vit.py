"""A small vision transformer (torch, fixed random weights; no PyPI package ships ViT/DeiT
weights we could find): the generic token path, ``--wrt`` the patch tokens with ``--attention``,
gives per-patch gradients and attention maps equal to torch's; the image path with
``--attention --patch-map`` gives the image map, the patch map and the attention maps on the
patch grid from one export, and ``edgesal run`` overlays them."""

from __future__ import annotations

import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgesal import metadata
from edgesal.errors import InputError
from edgesal.export import ExportOptions, export_saliency
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
        self.tokens = self.embedded = None

    def forward(self, image):
        self.embedded = self.patches(image)
        x = self.embedded.flatten(2).transpose(1, 2)
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


@pytest.fixture(scope="module")
def vit_onnx(tmp_path_factory):
    vit = TinyViT().eval()
    path = tmp_path_factory.mktemp("vit") / "vit.onnx"
    torch.onnx.export(vit, (torch.zeros(1, 3, SIZE, SIZE),), str(path), input_names=["image"],
                      output_names=["scores"], opset_version=17, dynamo=False)  # fmt: skip
    return vit, path


def _image_export(path, tokens: TokenOptions, **options) -> onnx.ModelProto:
    defaults = {"target": "class:2", "normalize": "none"}
    return export_saliency(path, ExportOptions(**{**defaults, **options}), tokens)


def _outputs(model: onnx.ModelProto, image: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"image": image}), strict=True))


def _rows(matrix: np.ndarray) -> np.ndarray:
    """The first token's row, normalized to max 1 (as the export writes [N, T] flows)."""
    return matrix[0] / matrix[0].max()


def test_image_path_gives_image_patch_and_attention_maps_in_one_call(vit_onnx):
    vit, path = vit_onnx
    image = torch.randn(1, 3, SIZE, SIZE)
    spec = TokenOptions(attention=True, patch_map=True)
    model = _image_export(path, spec)
    out = _outputs(model, image.numpy())
    alone = _outputs(_image_export(path, TokenOptions()), image.numpy())
    np.testing.assert_array_equal(out["saliency"], alone["saliency"])  # the image map as today

    image.requires_grad_(True)
    scores = vit(image)
    vit.embedded.retain_grad()
    probs = [layer.probs for layer in vit.layer]
    for p in probs:
        p.retain_grad()
    scores[0, 2].backward()
    np.testing.assert_allclose(
        out["saliency"][0], np.abs(image.grad.numpy()[0]).max(0), rtol=1e-4, atol=1e-7
    )
    grid = SIZE // PATCH
    per_patch = np.sqrt((vit.embedded.grad.numpy()[0] ** 2).sum(0))
    np.testing.assert_allclose(out["patch_map"][0], per_patch, rtol=1e-4, atol=1e-8)
    means = [p.detach().numpy()[0].mean(0) for p in probs]
    np.testing.assert_allclose(out["attention"][0], np.stack(means), atol=1e-5)
    tokens = 1 + grid * grid
    rollout = np.eye(tokens)
    for a in means:  # Abnar & Zuidema 2020
        step = a + np.eye(tokens)
        rollout = (step / step.sum(-1, keepdims=True)) @ rollout
    np.testing.assert_allclose(out["attention_rollout"][0], _rows(rollout), atol=1e-5)
    relevance = np.eye(tokens)
    for p, g in zip(probs, [p.grad for p in probs], strict=True):  # Chefer et al. 2021
        weighted = np.maximum(g.numpy()[0] * p.detach().numpy()[0], 0).mean(0)
        relevance = relevance + weighted @ relevance
    np.testing.assert_allclose(
        out["attention_gradient"][0], _rows(relevance - np.eye(tokens)), atol=1e-5
    )
    for flow in ("attention_rollout", "attention_gradient"):  # patches only, max 1 on the grid
        cells = out[flow][0, 1:]
        expected = (cells / cells.max()).reshape(grid, grid)
        np.testing.assert_allclose(out[f"{flow}_grid"][0], expected, rtol=1e-5, atol=1e-7)

    meta = metadata.read(model)
    assert meta["outputs"]["patch_maps"] == {
        "patch": "patch_map",
        "attention_gradient": "attention_gradient_grid",
        "attention_rollout": "attention_rollout_grid",
    }
    assert meta["patches"]["grid"] == [grid, grid] and meta["patches"]["tokens"] == tokens
    assert meta["modality"] == "image"


def test_runtime_offers_grid_maps_as_methods_and_overlays_them(vit_onnx, tmp_path):
    """``edgesal run --methods attention_rollout``: the [H/p, W/p] map, upsampled on the frame,
    is the one the model file computes."""
    from edgesal.runtimes.model import MethodChain
    from edgesal.runtimes.overlay import OverlayStyle, draw

    _, path = vit_onnx
    saved = tmp_path / "vit.sal.onnx"
    onnx.save(_image_export(path, TokenOptions(attention=True, patch_map=True)), str(saved))
    chain = MethodChain.load([str(saved)], None, ["attention_rollout", "vanilla"])
    assert [v.method for v in chain.variants] == ["attention_rollout", "vanilla"]
    variant = chain.variants[0]
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
    tensor, _, region = variant.preprocessor(frame)
    inference = variant.run(tensor, None)
    grid = SIZE // PATCH
    assert inference.saliency.shape == (grid, grid) and inference.saliency.max() == 1.0
    direct = _outputs(onnx.load(str(saved)), tensor)["attention_rollout_grid"][0]
    np.testing.assert_allclose(inference.saliency, direct, rtol=1e-6)
    drawn = draw(frame, inference.saliency, region, "rollout", OverlayStyle(contour=0.2))
    assert drawn.shape == frame.shape and not np.array_equal(drawn, frame)


def test_image_flags_refused_by_name(vit_onnx, tmp_path):
    _, path = vit_onnx
    with pytest.raises(InputError, match="--baseline-token: only for token inputs"):
        _image_export(path, TokenOptions(baseline_token=3))
    with pytest.raises(InputError, match="--roi/--roi-size: not with --attention"):
        _image_export(path, TokenOptions(attention=True), roi=(0, 0, 16, 16))
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(),
                               torch.nn.Linear(4 * SIZE * SIZE, 3)).eval()  # fmt: skip
    conv_path = tmp_path / "conv.onnx"
    torch.onnx.export(conv, (torch.zeros(1, 3, SIZE, SIZE),), str(conv_path),
                      input_names=["image"], opset_version=17, dynamo=False)  # fmt: skip
    with pytest.raises(InputError, match="no patch embedding .* reads it"):
        _image_export(conv_path, TokenOptions(patch_map=True), target="class:1")


def test_edgesal_run_records_the_patch_grid_map(vit_onnx, tmp_path):
    """The device CLI end to end: ``--methods attention_gradient`` writes [H/p, W/p] maps."""
    from edgesal.runtimes.records import RecordReader
    from tests.runtimes.clihelp import ROOT, runtime_cmd
    from tests.runtimes.synthetic import colour_frames, write_video

    _, path = vit_onnx
    saved = tmp_path / "vit.sal.onnx"
    onnx.save(_image_export(path, TokenOptions(attention=True)), str(saved))
    video = write_video(tmp_path / "clip.avi", colour_frames(4))
    args = ["run", str(saved), "--source", str(video), "--methods", "attention_gradient",
            "--records", str(tmp_path / "o.salrec"), "--record", str(tmp_path / "o.avi"),
            "--display", "no", "--selfcheck-every", "2", "--threads", "1"]  # fmt: skip
    proc = subprocess.run(runtime_cmd(*args), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    frames = list(RecordReader(tmp_path / "o.salrec").frames())
    grid = SIZE // PATCH
    assert len(frames) == 4 and all(f.saliency.shape == (grid, grid) for f in frames)
    assert frames[0].header["models"][0]["method"] == "attention_gradient"


def test_tflite_export_equals_onnx(vit_onnx, tmp_path):
    """Builtins only: every output of the TFLite file (LiteRT) equals the ONNX export to 1e-4."""
    from edgesal.cli import main
    from edgesal.runtimes.backends import load_backend

    _, path = vit_onnx
    files = {}
    for suffix in ("onnx", "tflite"):
        files[suffix] = tmp_path / f"vit.sal.{suffix}"
        argv = ["export", str(path), "-o", str(files[suffix]), "--attention", "--patch-map"]
        assert main([*argv, "--target", "class:2"]) == 0
    reference, lite = load_backend(files["onnx"], None), load_backend(files["tflite"], None)
    assert lite.outputs == reference.outputs
    image = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    ((lite_input, ((_, channels, *_), _)),) = lite.inputs.items()
    fed = image if channels == 3 else image.transpose(0, 2, 3, 1)
    expected = reference.run(reference.outputs, {"image": image})
    got = lite.run(lite.outputs, {lite_input: fed})
    for name, want, have in zip(reference.outputs, expected, got, strict=True):
        np.testing.assert_allclose(have.reshape(want.shape), want, atol=1e-4, err_msg=name)
