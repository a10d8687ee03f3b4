"""The edgesal metadata carried in an exported model's ``metadata_props``.

Runtimes read these keys (onnxruntime: ``session.get_modelmeta().custom_metadata_map``) to configure
preprocessing, labels and layout without flags. Every value is a string; structured values are JSON.

Keys
----
``edgesal.version``     edgesal version that wrote the model
``edgesal.method``      saliency method (``vanilla``, ``gradxinput``, ...)
``edgesal.target``      target spec as given (``argmax``, ``class:281``, ``input``,
                        ``output:NAME:max``)
``edgesal.input``       name of the image input
``edgesal.layout``      ``NCHW`` or ``NHWC`` (of the image input)
``edgesal.preprocess``  JSON :class:`Preprocess` fields
``edgesal.labels``      JSON list of class names (index = class id), when known
``edgesal.label_set``   name of the label set (``imagenet1k``), when known
``edgesal.outputs``     JSON object: ``{"scores": NAME, "saliency": NAME, ...}``
``edgesal.postprocess`` JSON ``{"reduce": ..., "normalize": ...}``
``edgesal.params``      JSON method parameters (steps, integration, baseline, samples, sigma, ...)
``edgesal.roi``         JSON region-of-interest plan (window or runtime size, crop, split tensor,
                        estimated saving), when exported with --roi/--roi-size; the runtime window
                        model also has an output ``roi_used`` [N, 2] listed in ``outputs``
``edgesal.seeds``       JSON list of the tensors the backward pass starts from (the target's
                        seed, or a classifier row looked up for an argmax target); quantization
                        tells gradient tensors from forward ones by them
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import onnx

from edgesal.errors import InputError

PREFIX = "edgesal."


@dataclass
class Preprocess:
    """How a runtime turns a camera frame into the model's image input.

    The frame (``color`` order, uint8) is resized so its shorter side is ``resize_shorter``
    (0: resize straight to ``size``), center-cropped to ``size`` = [H, W]; then, unless ``in_graph``
    is true, converted to float as ``(pixel / pixel_scale - mean) / std`` per channel and laid out
    as ``layout``.
    With ``in_graph`` true the model takes the uint8 HWC crop itself and normalizes internally.
    """

    size: list[int] = field(default_factory=lambda: [224, 224])
    color: str = "RGB"
    resize_shorter: int = 0
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    pixel_scale: float = 255.0
    in_graph: bool = False
    dtype: str = "float32"
    layout: str = "NCHW"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Preprocess:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


COLORS = ("RGB", "BGR")
FIELDS = tuple(Preprocess.__dataclass_fields__)


def preprocess_for(
    existing: dict | None, overrides: dict, spatial: tuple[int, int], layout: str, channels: int
) -> dict:
    """The ``preprocess`` entry of an export: the model's own (size and layout from its image
    input when it has none) with the ``edgesal export`` flags applied; bad values name the flag."""
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise InputError(f"preprocess: unknown field(s) {unknown}; known: {list(FIELDS)}")
    merged = {"size": [int(spatial[0]), int(spatial[1])], "layout": layout, **(existing or {})}
    merged.update(overrides)
    for key in ("mean", "std"):
        values = [float(v) for v in merged.get(key, [])]
        if key in overrides and len(values) not in (1, channels):
            raise InputError(f"--{key}: {len(values)} values for an image with {channels} channels")
        if key == "std" and any(v <= 0 for v in values):
            raise InputError(f"--std {','.join(map(str, values))}: every value must be > 0")
    if merged.get("color", "RGB") not in COLORS:
        raise InputError(f"--color {merged['color']}: choose one of {', '.join(COLORS)}")
    if float(merged.get("pixel_scale", 255.0)) <= 0:
        raise InputError(f"--pixel-scale {merged['pixel_scale']}: must be > 0")
    if int(merged.get("resize_shorter", 0)) < 0:
        raise InputError(f"--resize-shorter {merged['resize_shorter']}: must be >= 0")
    return merged


def write(model: onnx.ModelProto, values: dict[str, object]) -> None:
    """Set ``edgesal.<key>`` entries (non-strings are JSON-encoded), replacing existing ones."""
    encoded = {
        PREFIX + key: value if isinstance(value, str) else json.dumps(value)
        for key, value in values.items()
    }
    kept = [p for p in model.metadata_props if p.key not in encoded]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in encoded.items():
        model.metadata_props.add(key=key, value=value)


def read(props: dict[str, str] | onnx.ModelProto) -> dict[str, object]:
    """The ``edgesal.*`` entries without the prefix, JSON values decoded."""
    if isinstance(props, onnx.ModelProto):
        props = {p.key: p.value for p in props.metadata_props}
    result: dict[str, object] = {}
    for key, value in props.items():
        if not key.startswith(PREFIX):
            continue
        try:
            result[key[len(PREFIX) :]] = json.loads(value)
        except json.JSONDecodeError:
            result[key[len(PREFIX) :]] = value
    return result
