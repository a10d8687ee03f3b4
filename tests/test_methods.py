"""Saliency methods on a small CNN: axioms (IG completeness), batching, and a torch reference."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from edgesal.errors import InputError
from edgesal.export import ExportOptions, export_saliency
from edgesal.methods import METHODS, MethodOptions
from edgesal.methods.integrated import path_points
from tests.models import nchw_cnn

RAW = {"reduce": "none", "normalize": "none"}


def run(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"image": x}), strict=True))


def attribution(model, x, method, target="argmax", **params) -> np.ndarray:
    options = ExportOptions(method=method, target=target, params=MethodOptions(**params), **RAW)
    return run(export_saliency(model, options), x)["saliency"]


@pytest.fixture(scope="module")
def cnn():
    return nchw_cnn(seed=3)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(11).standard_normal((1, 3, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("integration", ["trapezoid", "gausslegendre"])
def test_integrated_gradients_completeness(cnn, x, integration):
    cls = int(np.argmax(run(cnn, x)["logits"]))
    attr = attribution(
        cnn, x, "integrated", target=f"class:{cls}", steps=64, integration=integration
    )
    gap = run(cnn, x)["logits"][0, cls] - run(cnn, np.zeros_like(x))["logits"][0, cls]
    assert abs(attr.sum() - gap) <= 0.02 * abs(gap), (attr.sum(), gap)


def test_integrated_gradients_equals_sum_of_path_gradients(cnn, x):
    alphas, weights = path_points(5, "gausslegendre")
    cls = int(np.argmax(run(cnn, x)["logits"]))
    expected = (
        sum(
            w * attribution(cnn, (a * x).astype(np.float32), "vanilla", target=f"class:{cls}")
            for a, w in zip(alphas, weights, strict=True)
        )
        * x
    )
    got = attribution(cnn, x, "integrated", steps=5, integration="gausslegendre")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_constant_and_blur_baselines(cnn, x):
    cls = int(np.argmax(run(cnn, x)["logits"]))
    base = np.full_like(x, 0.5)
    attr = attribution(cnn, x, "integrated", target=f"class:{cls}", steps=64, baseline="0.5")
    gap = run(cnn, x)["logits"][0, cls] - run(cnn, base)["logits"][0, cls]
    assert abs(attr.sum() - gap) <= 0.02 * abs(gap)


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with mirrored borders (numpy 'reflect': the edge is not repeated)."""
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (radius,) * 2, (radius,) * 2], "reflect")
    h, w = x.shape[2:]
    rows = sum(t * padded[:, :, i : i + h, :] for i, t in enumerate(taps))
    return sum(t * rows[:, :, :, i : i + w] for i, t in enumerate(taps)).astype(np.float32)


def test_integrated_gradients_blur_baseline_is_the_blurred_image(cnn, x):
    """Completeness against an independent numpy blur (sigma = max(1, side / 32) = 1 here)."""
    cls = int(np.argmax(run(cnn, x)["logits"]))
    attr = attribution(cnn, x, "integrated", target=f"class:{cls}", steps=64, baseline="blur")
    gap = run(cnn, x)["logits"][0, cls] - run(cnn, _gaussian_blur(x, 1.0))["logits"][0, cls]
    assert abs(attr.sum() - gap) <= 0.02 * abs(gap), (attr.sum(), gap)


def test_integrated_gradients_image_baseline_goes_through_the_preprocessing(cnn, x, tmp_path):
    """An image file baseline is read, centre-cropped and normalized as the model's metadata
    says: completeness holds against that tensor computed here by the formula (256 points: the
    path from a noise image crosses many kinks)."""
    import cv2

    from edgesal import metadata

    rgb = np.random.default_rng(4).integers(0, 256, (20, 16, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "base.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    mean, std = np.array([0.4, 0.5, 0.6]), np.array([0.2, 0.25, 0.3])
    model = onnx.ModelProto.FromString(cnn.SerializeToString())
    preprocess = {
        "size": [16, 16],
        "resize_shorter": 16,
        "mean": mean.tolist(),
        "std": std.tolist(),
    }
    metadata.write(model, {"preprocess": preprocess})
    crop = rgb[2:18]  # the centre 16x16 of 20x16
    base = ((crop / 255.0 - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
    cls = int(np.argmax(run(cnn, x)["logits"]))
    attr = attribution(
        model,
        x,
        "integrated",
        target=f"class:{cls}",
        steps=256,
        baseline=str(tmp_path / "base.png"),
    )
    gap = run(cnn, x)["logits"][0, cls] - run(cnn, base)["logits"][0, cls]
    assert abs(attr.sum() - gap) <= 0.02 * abs(gap), (attr.sum(), gap)


def _noisy(x, samples, sigma, seed):
    noise = np.random.default_rng(seed).standard_normal((1, samples, *x.shape[1:]))
    spread = x.max() - x.min()
    return (x[:, None] + sigma * spread * noise).astype(np.float32)[0]


@pytest.mark.parametrize("squared", [False, True])
def test_smoothgrad_equals_average_over_stored_noise(cnn, x, squared):
    cls = int(np.argmax(run(cnn, x)["logits"]))
    points = _noisy(x, 4, 0.2, seed=5)
    maps = [attribution(cnn, p[None], "vanilla", target=f"class:{cls}") for p in points]
    maps = [m * m for m in maps] if squared else maps
    got = attribution(cnn, x, "smoothgrad", samples=4, sigma=0.2, seed=5, squared=squared)
    np.testing.assert_allclose(got, np.mean(maps, axis=0), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("method", ["gradxinput", "integrated", "guided"])
def test_smooth_wraps_other_methods(cnn, x, method, squared):
    """``--smooth K`` around a method is that method averaged (or its square averaged) over the
    K noisy copies stored in the graph, each explaining the clean input's top class."""
    cls = int(np.argmax(run(cnn, x)["logits"]))
    params = {"steps": 4} if method == "integrated" else {}
    maps = [
        attribution(cnn, p[None], method, target=f"class:{cls}", **params)
        for p in _noisy(x, 3, 0.1, seed=2)
    ]
    maps = [m * m for m in maps] if squared else maps
    got = attribution(cnn, x, method, smooth=3, sigma=0.1, seed=2, squared=squared, **params)
    np.testing.assert_allclose(got, np.mean(maps, axis=0), rtol=1e-4, atol=1e-7)


def _torch_cnn(model: onnx.ModelProto, guided: bool = False):
    """tests.models.nchw_cnn in torch: (features(x) -> last feature map, head(map) -> logits)."""
    w = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}

    def act(t, hi=None):
        if guided:
            return _GuidedClip.apply(t, hi)
        return t.clamp(0, hi) if hi is not None else t.relu()

    def features(t):
        c1 = F.conv2d(t, w["w1"], w["b1"], padding=1)
        n1 = F.batch_norm(c1, w["bn_m"], w["bn_v"], w["bn_s"], w["bn_b"], eps=1e-5)
        r2 = act(F.conv2d(act(n1, 6.0), w["dw"], stride=2, padding=1, groups=8))
        return F.conv2d(r2, w["pw"]) + r2

    def head(feature):
        return F.linear(feature.mean((2, 3)), w["fc"], w["fcb"])

    return features, head


class _GuidedClip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, hi):
        ctx.save_for_backward(t)
        ctx.hi = hi
        return t.clamp(0, hi) if hi is not None else t.relu()

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        inside = t > 0 if ctx.hi is None else (t > 0) & (t < ctx.hi)
        return grad.clamp(min=0) * inside, None


def test_guided_backprop_matches_torch_reference(cnn, x):
    features, head = _torch_cnn(cnn, guided=True)
    xt = torch.from_numpy(x).requires_grad_(True)
    logits = head(features(xt))
    logits[0, logits[0].argmax()].backward()
    got = attribution(cnn, x, "guided")
    np.testing.assert_allclose(got, xt.grad.numpy(), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("method", ["gradcam", "gradcampp"])
def test_gradcam_matches_torch_reference(cnn, x, method):
    features, head = _torch_cnn(cnn)
    feature = features(torch.from_numpy(x)).requires_grad_(True)
    logits = head(feature)
    logits[0, logits[0].argmax()].backward()
    a, g = feature.detach(), feature.grad
    if method == "gradcam":
        weights = g.mean((2, 3), keepdim=True)
    else:
        g2, g3 = g**2, g**3
        denom = 2 * g2 + a.sum((2, 3), keepdim=True) * g3
        alpha = torch.where(g != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), 0)
        weights = (alpha * g.relu()).sum((2, 3), keepdim=True)
    cam = (weights * a).sum(1, keepdim=True).relu()
    expected = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    got = attribution(cnn, x, method, layer="a1")
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-3, atol=1e-6)
    auto = attribution(cnn, x, method)
    np.testing.assert_allclose(auto, got, rtol=1e-6)


def test_layer_by_node_name_equals_layer_by_tensor(cnn, x):
    named = onnx.ModelProto.FromString(cnn.SerializeToString())
    node = next(n for n in named.graph.node if n.output[0] == "p1")
    node.name = "project_conv"
    by_node = attribution(named, x, "gradcam", layer="project_conv")
    np.testing.assert_array_equal(by_node, attribution(cnn, x, "gradcam", layer="p1"))
    assert not np.allclose(by_node, attribution(cnn, x, "gradcam", layer="r1"))


def test_multi_method_outputs_equal_single_exports(cnn, x):
    names = sorted(METHODS)
    params = MethodOptions(steps=4, samples=3)
    post = {"reduce": "l2", "normalize": "percentile"}
    multi = run(export_saliency(cnn, ExportOptions(methods=names, params=params, **post)), x)
    for name in names:
        single = run(export_saliency(cnn, ExportOptions(method=name, params=params, **post)), x)
        np.testing.assert_allclose(
            multi[f"saliency_{name}"], single["saliency"], rtol=1e-5, atol=1e-6
        )


def _map(model, x, method, target, runtime_target=None):
    params = MethodOptions(steps=3, samples=2)
    exported = export_saliency(
        model, ExportOptions(method=method, target=target, params=params, **RAW)
    )
    sess = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"image": x, **({"target": np.array([runtime_target])} if target == "input" else {})}
    return sess.run(["saliency"], feeds)[0]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_with_every_target_kind(cnn, x, method):
    """Each way of naming one class gives the same map, argmax is the top class, and (for
    methods linear in the seed) a mean target is the mean of the per-class maps."""
    classes = run(cnn, x)["logits"].shape[1]
    top = int(np.argmax(run(cnn, x)["logits"]))
    per_class = [_map(cnn, x, method, f"class:{k}") for k in range(classes)]
    assert not np.allclose(per_class[0], per_class[1])
    for k in (0, classes - 1):
        np.testing.assert_allclose(
            _map(cnn, x, method, "input", k), per_class[k], rtol=1e-5, atol=1e-7
        )
        np.testing.assert_allclose(
            _map(cnn, x, method, f"output:logits:{k}"), per_class[k], rtol=1e-5, atol=1e-7
        )
    for spec in ("argmax", "output:logits:max"):
        np.testing.assert_allclose(_map(cnn, x, method, spec), per_class[top], rtol=1e-5, atol=1e-7)
    if method in ("vanilla", "gradxinput", "integrated", "smoothgrad"):
        mean = _map(cnn, x, method, "output:logits:mean")
        np.testing.assert_allclose(mean, np.mean(per_class, axis=0), rtol=1e-4, atol=1e-6)
        total = _map(cnn, x, method, "output:logits:sum")
        np.testing.assert_allclose(total, np.sum(per_class, axis=0), rtol=1e-4, atol=1e-6)


def test_batched_methods_give_independent_maps():
    model = nchw_cnn(seed=3, batch="N")
    xs = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    params = MethodOptions(steps=4)
    both = run(
        export_saliency(model, ExportOptions(method="integrated", batch=2, params=params, **RAW)),
        xs,
    )["saliency"]
    one = export_saliency(model, ExportOptions(method="integrated", params=params, **RAW))
    for i in range(2):
        np.testing.assert_allclose(
            both[i], run(one, xs[i : i + 1])["saliency"][0], rtol=1e-4, atol=1e-7
        )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"steps": 0}, "--steps 0"),
        ({"samples": 0}, "--samples 0"),
        ({"sigma": -0.1}, "--sigma -0.1"),
        ({"smooth": -1}, "--smooth -1"),
        ({"layer": "nope"}, "--layer nope"),
        ({"layer": "f"}, "not a 4-D feature map"),
        ({"layer": "g"}, r"'g' is not spatial \(shape \[1, 8, 1, 1\]"),
    ],
)
def test_bad_method_parameters(cnn, params, message):
    with pytest.raises(InputError, match=message):
        export_saliency(cnn, ExportOptions(method="gradcam", params=MethodOptions(**params)))


def test_fixed_batch_reshape_is_rebatched_for_batched_methods(cnn, x):
    model = onnx.ModelProto.FromString(cnn.SerializeToString())
    for init in model.graph.initializer:
        if init.name == "shape":
            init.CopyFrom(numpy_helper.from_array(np.array([1, -1], np.int64), "shape"))
    fixed = attribution(model, x, "integrated", target="class:1", steps=8)
    free = attribution(cnn, x, "integrated", target="class:1", steps=8)
    np.testing.assert_allclose(fixed, free, rtol=1e-5, atol=1e-7)  # tests/test_rebatch.py: more
