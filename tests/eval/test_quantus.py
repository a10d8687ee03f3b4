"""edgesal's numbers against Quantus 0.6 on the same maps and the same network.

The network is a small torch model (Quantus needs one) and its hand-written ONNX twin with the
same weights; edgesal exports the twin's vanilla-gradient saliency model and scores it on
onnxruntime, Quantus scores edgesal's maps on torch.

- Deletion: Quantus ``PixelFlipping`` with baseline 0 and one step = whole pixels (3 channels).
- Insertion: Quantus 0.6 has no insertion metric, so ``PixelFlipping`` starts from the blurred
  canvas and its perturbation writes the original pixels back: Quantus's ordering, stepping,
  batching and softmax, edgesal's canvas.
- PointingGame: the boxes grown by the tolerance become Quantus's segmentation masks.
- MPRT: Quantus randomizes the torch layers top-down (cascading) and explains each model with a
  torch gradient; edgesal's sanity check randomizes the ONNX initializers with the same values,
  re-exports and explains on onnxruntime; the per-layer Spearman correlations must agree.
"""

from __future__ import annotations

import numpy as np
import pytest

quantus = pytest.importorskip("quantus", reason="quantus 0.6 is a test dependency")
torch = pytest.importorskip("torch")

from edgesal.eval import perturb  # noqa: E402
from edgesal.eval.audit import evaluate  # noqa: E402
from edgesal.eval.model import Runner, inspect, pixels_of  # noqa: E402
from edgesal.eval.options import EvalOptions  # noqa: E402
from edgesal.eval.pointing import distance_to_boxes, pointing_hit  # noqa: E402
from edgesal.eval.sanity import Layer  # noqa: E402
from edgesal.export import ExportOptions, export_saliency  # noqa: E402
from tests.eval.models import onnx_twin, smooth_images, torch_net  # noqa: E402

SIZE, STEPS = 24, 12  # Quantus wants H*W divisible by its step of 3*H*W/STEPS features


@pytest.fixture(scope="module")
def setup():
    net = torch_net()
    model = export_saliency(onnx_twin(net, SIZE), ExportOptions(method="vanilla"))
    runner = Runner(model, inspect(model))
    pixels, maps, targets = [], [], []
    for crop in smooth_images(4, SIZE).values():
        p = pixels_of(crop, runner.spec.preprocess)
        ex = runner.explain(p)
        jitter = np.random.default_rng(len(maps)).random(ex.maps["vanilla"].shape) * 1e-6
        pixels.append(p)
        maps.append(ex.maps["vanilla"] + jitter.astype(np.float32))  # no ties: one order
        targets.append(ex.target)
    x = np.stack(pixels).transpose(0, 3, 1, 2).astype(np.float32)
    return net, model, runner, pixels, np.stack(maps), np.array(targets), x


def _pixel_flipping(perturb_func=None):
    return quantus.PixelFlipping(
        features_in_step=3 * SIZE * SIZE // STEPS,
        perturb_baseline=0.0,
        perturb_func=perturb_func,
        normalise=False,
        abs=False,
        disable_warnings=True,
    )


def test_deletion_matches_quantus_pixel_flipping(setup):
    net, _, runner, pixels, maps, targets, x = setup
    theirs = _pixel_flipping()(
        model=net, x_batch=x, y_batch=targets, a_batch=maps[:, None], softmax=True, device="cpu"
    )
    for i, p in enumerate(pixels):
        mine = perturb.deletion(runner.predict, p, maps[i], int(targets[i]), STEPS, "zeros")
        assert len(theirs[i]) == STEPS
        np.testing.assert_allclose(mine[1:], theirs[i], atol=2e-5)


def test_insertion_matches_quantus_from_the_canvas(setup):
    net, _, runner, pixels, maps, targets, x = setup
    canvas = np.stack([perturb.baseline(p, "blur") for p in pixels]).transpose(0, 3, 1, 2)
    original = x.reshape(len(x), -1)

    def write_back(arr, indices, **kwargs):
        out = arr.copy()
        rows = np.arange(len(arr))[:, None]
        out[rows, indices] = original[rows, indices]
        return out

    theirs = _pixel_flipping(write_back)(
        model=net,
        x_batch=np.ascontiguousarray(canvas, np.float32),
        y_batch=targets,
        a_batch=maps[:, None],
        softmax=True,
        device="cpu",
    )
    for i, p in enumerate(pixels):
        mine = perturb.insertion(runner.predict, p, maps[i], int(targets[i]), STEPS, "blur")
        np.testing.assert_allclose(mine[1:], theirs[i], atol=2e-5)


def test_pointing_game_matches_quantus(setup):
    net, _, _, _, maps, targets, x = setup
    boxes = [(2.0, 2.0, 9.0, 9.0), (12.0, 3.0, 20.0, 11.0), (0.0, 14.0, 10.0, 24.0), (6, 6, 18, 18)]
    for tolerance in (0.0, 3.0):
        mine = [pointing_hit(m, [b], tolerance) for m, b in zip(maps, boxes, strict=True)]
        masks = np.stack(
            [distance_to_boxes(m.shape, [b]) <= tolerance for m, b in zip(maps, boxes, strict=True)]
        )
        theirs = quantus.PointingGame(disable_warnings=True)(
            model=net,
            x_batch=x,
            y_batch=targets,
            a_batch=maps[:, None],
            s_batch=masks[:, None].astype(np.float32),
            device="cpu",
        )
        assert mine == [bool(t) for t in theirs]
    assert any(mine) and not all(mine)  # the check sees both outcomes


class TorchWeights:
    """Randomizer handing edgesal's sanity check the weights Quantus drew for each layer."""

    def __init__(self, state: dict[str, np.ndarray]):
        self.state = state

    def __call__(self, layer: Layer, name: str, values: np.ndarray) -> np.ndarray:
        return self.state[name]


def test_mprt_matches_quantus(setup, tmp_path):
    net, model, _, _, maps, targets, x = setup
    states = []

    def explain(model, inputs, targets, **kwargs):
        states.append({k: v.detach().numpy().copy() for k, v in model.state_dict().items()})
        tensor = torch.tensor(inputs, requires_grad=True)
        out = model(tensor)
        out[torch.arange(len(out)), torch.as_tensor(targets)].sum().backward()
        return tensor.grad.abs().amax(dim=1, keepdim=True).numpy()

    theirs = quantus.MPRT(layer_order="top_down", disable_warnings=True)(
        model=net,
        x_batch=x,
        y_batch=targets,
        a_batch=maps[:, None],
        explain_func=explain,
        device="cpu",
    )
    assert list(theirs) == ["original", "fc", "conv2", "conv1"]
    options = EvalOptions(
        steps=2,
        road_fractions=(),
        sensitivity_samples=0,
        controls=(),
        sanity_images=len(x),
        sanity_steps="every",
        sanity_modes=("cascading",),
        random_logit=False,
    )
    images = smooth_images(4, SIZE)
    report = evaluate(model, images, tmp_path, options, randomizer=TorchWeights(states[-1]))
    sanity = report["sanity"]
    assert [s["layers"] for s in sanity["cascading"]["steps"]] == [1, 2, 3]
    mine = sanity["cascading"]["methods"]["vanilla"]["spearman"]
    for step, layer in enumerate(["fc", "conv2", "conv1"]):
        np.testing.assert_allclose(mine[step], theirs[layer], atol=2e-3)
    assert np.mean(theirs["conv1"]) < 0.9  # randomization did change the maps
