"""Cases for edgesal/autodiff/rules/resize.py.

Nearest cases use lengths whose ratios are exact binary fractions, so float32 (onnxruntime, the
rule) and float64 (onnx.reference) source coordinates agree at .5 rounding boundaries. The
harness turns float constants into doubles, which Resize's float-only scales input rejects, so
these cases pass sizes; the scales input is checked against torch in tests/test_rule_edges.py.
"""

import numpy as np

from tests.gradcheck import Case, cases

COORDINATE_MODES = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


def resize_case(rng, shape, attrs, scales=None, sizes=None, roi=None, opset=17, id_=""):
    """A Resize case; integer ``scales`` are passed as the equivalent sizes."""
    if scales is not None:
        axes = attrs.get("axes", range(len(shape)))
        sizes = [shape[a] * int(s) for a, s in zip(axes, scales, strict=True)]
    inputs = {"x": rng.standard_normal(shape), "roi": roi, "scales": None}
    inputs["sizes"] = np.asarray(sizes, dtype=np.int64)
    return Case("Resize", inputs, attrs=attrs, constants=("roi",), opset=opset, id=id_)


@cases("Resize")
def nearest(rng: np.random.Generator):
    for ctm in COORDINATE_MODES:
        for rounding in NEAREST_MODES:
            attrs = {
                "mode": "nearest",
                "coordinate_transformation_mode": ctm,
                "nearest_mode": rounding,
            }
            tag = f"nearest-{ctm}-{rounding}"
            yield resize_case(rng, (1, 2, 4, 8), attrs, scales=[1, 1, 2, 3], id_=f"{tag}-x23")
            yield resize_case(rng, (2, 1, 4, 8), attrs, sizes=[2, 1, 7, 6], id_=f"{tag}-sizes")
    attrs = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel_symmetric"}
    yield resize_case(rng, (1, 2, 4, 8), attrs, sizes=[1, 2, 10, 6], opset=19, id_="nearest-sym")


@cases("Resize")
def linear(rng: np.random.Generator):
    for ctm in COORDINATE_MODES + ["half_pixel_symmetric"]:
        attrs = {"mode": "linear", "coordinate_transformation_mode": ctm}
        opset = 19 if ctm == "half_pixel_symmetric" else 17
        tag = f"linear-{ctm}"
        yield resize_case(rng, (1, 3, 5, 4), attrs, scales=[1, 1, 2, 2], opset=opset, id_=tag)
        yield resize_case(
            rng, (2, 2, 6, 7), attrs, sizes=[2, 2, 11, 3], opset=opset, id_=f"{tag}-sizes"
        )
        yield resize_case(
            rng, (1, 1, 5, 6), attrs, sizes=[1, 1, 1, 4], opset=opset, id_=f"{tag}-to-1"
        )
    attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    yield resize_case(rng, (1, 2, 8, 6), attrs, sizes=[1, 2, 4, 3], id_="linear-down")
    yield resize_case(rng, (2, 3, 7), attrs, scales=[1, 1, 3], id_="linear-1d")
    yield resize_case(rng, (1, 2, 3, 4, 3), attrs, scales=[1, 1, 2, 1, 2], id_="linear-3d")


@cases("Resize")
def cubic(rng: np.random.Generator):
    for ctm in ["half_pixel", "asymmetric", "align_corners"]:
        for exclude in (0, 1):
            attrs = {
                "mode": "cubic",
                "coordinate_transformation_mode": ctm,
                "exclude_outside": exclude,
                "cubic_coeff_a": -0.5 if exclude else -0.75,
            }
            yield resize_case(
                rng, (1, 2, 5, 6), attrs, sizes=[1, 2, 9, 4], id_=f"cubic-{ctm}-ex{exclude}"
            )


@cases("Resize")
def crop_and_resize(rng: np.random.Generator):
    roi = np.asarray([0, 0, -0.2, 0.1, 1, 1, 0.9, 1.3])
    for mode in ("nearest", "linear"):
        attrs = {
            "mode": mode,
            "coordinate_transformation_mode": "tf_crop_and_resize",
            "extrapolation_value": 2.5,
        }
        yield resize_case(rng, (1, 2, 6, 5), attrs, roi=roi, sizes=[1, 2, 7, 9], id_=mode)


@cases("Resize")
def opset18_attributes(rng: np.random.Generator):
    attrs = {"mode": "linear", "axes": [2, 3]}
    yield resize_case(rng, (1, 2, 3, 5), attrs, scales=[2, 3], opset=18, id_="axes-scales")
    yield resize_case(
        rng,
        (1, 2, 4, 8),
        {"mode": "nearest", "axes": [3, 2], "keep_aspect_ratio_policy": "not_larger"},
        sizes=[12, 12],
        opset=18,
        id_="keep-aspect",
    )
    yield resize_case(
        rng,
        (1, 2, 3, 4),
        {"mode": "linear", "antialias": 1},
        scales=[1, 1, 2, 2],
        opset=18,
        id_="antialias-upscale",
    )
    yield resize_case(
        rng, (2, 4, 3, 3), {"mode": "nearest"}, sizes=[2, 2, 6, 3], opset=21, id_="channels"
    )
