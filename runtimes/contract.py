"""The saliency-model contract: ``edgesal.*`` metadata keys, preprocessing, frame -> tensor.

The one definition every part of edgesal uses: ``edgesal export`` writes the keys below
(:mod:`edgesal.metadata` adds only the ONNX ``metadata_props`` glue), and the device runtime,
``edgesal eval``, ``edgesal quantize`` (calibration images) and the demo read them and make their
input tensors with :class:`Preprocessor`. Parsed with :mod:`json` and numpy/OpenCV only, so a
device needs neither the ``onnx`` package nor the rest of ``edgesal``.

Pixels. A frame is cut to the region the model sees (:func:`model_region`), that region is
resized to the input grid (``INTER_AREA`` when it shrinks both sides, else ``INTER_LINEAR``),
colour-converted and normalised as ``(pixel / pixel_scale - mean) / std``. This is the device's
path and the one truth: the device is what users run, so calibration ranges, evaluation scores
and the demo are computed on the pixels the device feeds. Cutting the region before resizing
equals "resize the shorter side, then centre-crop" up to interpolation, costs less on a device,
and area averaging does not alias when a camera frame is shrunk several times.

Adding a metadata key is one :class:`Key` line in :data:`KEYS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import cv2
import numpy as np

from edgesal.runtimes.errors import DeviceError, ModelError

PREFIX = "edgesal."
MAX_LABEL_FILE = 4 << 20
SALIENCY = "saliency"
TARGET_INPUT = "target"
COLORS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class Key:
    """One ``edgesal.<name>`` entry. ``text`` values are stored as they are; the others as JSON
    (a value that is not valid JSON is kept as the string it is)."""

    name: str
    doc: str
    text: bool = False


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("version", "edgesal version that wrote the model", text=True),
        Key("method", "saliency method(s), comma-joined (``vanilla``, ``gradxinput``...)", True),
        Key(
            "target",
            "target spec (``argmax``, ``class:281``, ``input``, ``output:NAME:max``)",
            True,
        ),
        Key("input", "name of the image input", text=True),
        Key("layout", "``NCHW`` or ``NHWC`` (of the image input)", text=True),
        Key("preprocess", "JSON :class:`Preprocess` fields"),
        Key("labels", "JSON list of class names (index = class id), when known"),
        Key("label_set", "name of the label set (``imagenet1k``), when known", text=True),
        Key("outputs", 'JSON ``{"scores": N, "saliency": N, "saliency_by_method": {...}}``'),
        Key("postprocess", 'JSON ``{"reduce": ..., "normalize": ...}``'),
        Key("params", "JSON method parameters (steps, integration, baseline, samples, sigma...)"),
        Key("roi", "JSON region-of-interest plan (window or runtime size, crop, split tensor)"),
        Key("seeds", "JSON list of the tensors the backward pass starts from"),
        Key("modality", "what the input holds: image, audio, series, tabular, tokens", True),
        Key("wrt", "the float tensor the map differentiates (token models: the embeddings)", True),
        Key(
            "tokens",
            "JSON token-model facts: mask_input, vocab (embedding rows), table, length, "
            "special_tokens, baseline_token, rollout_from (docs/tokens.md)",
        ),
        Key("patches", "JSON vision-transformer patch grid: grid, embedding, tokens, layers"),
        Key("axes", "axis names of the explained input (``N,C,H,W``, ``N,T,F``, ``N,F``)", True),
        Key("map_axes", "axis names of the saliency output (``axes`` less a reduced one)", True),
        Key("audio", "JSON audio front end (``edgesal.runtimes.audio.FrontEnd``, docs/audio.md)"),
        Key("boxes", 'JSON ``{"output": NAME, "format": "xyxy"}``: a detector\'s box output'),
        Key(
            "batching", "JSON how multi-sample methods ran: batch, rebatched (rewrites), sequential"
        ),
        Key("source", "format and file an inbound (TFLite, Keras...) model came from", True),
        Key("zoo.model", "zoo model name, for models built by ``edgesal.zoo``", text=True),
        Key("quant.seed_scale", "JSON factor the int8 gradient seed was scaled by"),
        Key("quant.kept_float", "JSON list of nodes an int8 model keeps in float"),
        Key("quant.format", "how ``edgesal quantize`` stored the model (``qdq-int8``)", True),
        Key("quant.budget", "JSON map-error budget the int8 model was built for"),
    )
}


def decode(props: dict[str, str]) -> dict[str, object]:
    """The ``edgesal.*`` entries without the prefix: text keys as stored, the others JSON-decoded
    (kept as the string when not JSON)."""
    result: dict[str, object] = {}
    for key, value in props.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        known = KEYS.get(name)
        if known is not None and known.text:
            result[name] = value
            continue
        try:
            result[name] = json.loads(value)
        except (json.JSONDecodeError, TypeError, RecursionError):  # nested too deep: kept as text
            result[name] = value
    return result


def encode(values: dict[str, object]) -> dict[str, str]:
    """``edgesal.<key>`` -> string: strings as they are, anything else as JSON. A key missing
    from :data:`KEYS`, or a text key given a non-string, is refused, so the table stays the
    complete list of what edgesal writes."""
    encoded = {}
    for key, value in values.items():
        if key not in KEYS:
            raise ModelError(
                f"metadata {PREFIX}{key}: not a known key; add a Key line to "
                "edgesal.runtimes.contract.KEYS"
            )
        if KEYS[key].text and not isinstance(value, str):
            raise ModelError(f"metadata {PREFIX}{key}: expected a string, got {value!r}")
        encoded[PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
    return encoded


@dataclass(frozen=True)
class Preprocess:
    """Frame -> input tensor: the region behind ``size`` = [H, W] (the whole frame, or with
    ``resize_shorter`` the centre crop a shorter-side resize to ``resize_shorter`` would keep)
    resized to ``size``, in ``color`` order, then ``(pixel / pixel_scale - mean) / std`` per
    channel laid out as ``layout``; with ``in_graph`` the model takes the uint8 crop itself."""

    size: tuple[int, int] = (224, 224)
    color: str = "RGB"
    resize_shorter: int = 0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    pixel_scale: float = 255.0
    in_graph: bool = False
    dtype: str = "float32"
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        for name in ("size", "mean", "std"):  # JSON gives lists; a frozen value holds tuples
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @classmethod
    def from_dict(cls, data: dict, where: str = "edgesal.preprocess") -> Preprocess:
        """The fields of ``data`` this class knows (others ignored), checked by :func:`check`."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        check(values, lambda name: f"{where} {name}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str, where: str = "edgesal.preprocess") -> Preprocess:
        return cls.from_dict(json.loads(text), where)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


FIELDS = tuple(f.name for f in fields(Preprocess))


def check(values: dict, label: Callable[[str], str], channels: int | None = None) -> None:
    """Refuse bad preprocessing values; ``label(field)`` names each in the message (a flag such
    as ``--std``, or the metadata key). ``channels``: also check the mean/std counts."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ModelError(f"preprocess: unknown field(s) {unknown}; known: {list(FIELDS)}")
    try:
        size = [int(v) for v in values.get("size", (1, 1))]
        means = [float(v) for v in values.get("mean", ())]
        stds = [float(v) for v in values.get("std", ())]
        scale = float(values.get("pixel_scale", 255.0))
        shorter = int(values.get("resize_shorter", 0))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{label('preprocess')}: not a number ({exc})") from None
    for key, numbers in (("mean", means), ("std", stds)):
        if channels is not None and key in values and len(numbers) not in (1, channels):
            raise ModelError(
                f"{label(key)}: {len(numbers)} values for an image with {channels} channels"
            )
    if len(size) != 2 or min(size) <= 0:
        raise ModelError(f"{label('size')} {size}: expected two sizes > 0 (H, W)")
    if any(v <= 0 for v in stds):
        raise ModelError(f"{label('std')} {','.join(map(str, stds))}: every value must be > 0")
    if values.get("color", "RGB") not in COLORS:
        raise ModelError(f"{label('color')} {values['color']}: choose one of {', '.join(COLORS)}")
    if values.get("layout", "NCHW") not in LAYOUTS:
        raise ModelError(f"{label('layout')} {values['layout']}: choose NCHW or NHWC")
    if scale <= 0:
        raise ModelError(f"{label('pixel_scale')} {scale}: must be > 0")
    if shorter < 0:
        raise ModelError(f"{label('resize_shorter')} {shorter}: must be >= 0")


def flag(name: str) -> str:
    """The export flag of a preprocessing field: ``pixel_scale`` -> ``--pixel-scale``."""
    return "--" + name.replace("_", "-")


def merged_preprocess(
    existing: dict | None, overrides: dict, spatial: tuple[int, int], layout: str, channels: int
) -> dict:
    """The ``preprocess`` entry of an export: the model's own (size and layout from its image
    input when it has none) with the flag ``overrides`` applied, checked; errors name the flag."""
    check(overrides, flag, channels)
    merged = {"size": [int(spatial[0]), int(spatial[1])], "layout": layout, **(existing or {})}
    merged.update(overrides)
    check(merged, flag)
    return merged


@dataclass(frozen=True)
class Contract:
    """What a runtime needs to feed the model and read its answer."""

    input: str
    layout: str
    preprocess: Preprocess
    scores: str
    saliency: dict[str, str]  # method -> output name, in output order
    method: str = "unknown"
    target: str = "argmax"
    target_input: str | None = None
    labels: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)
    shape: tuple = ()  # the image input's dims as the file declares them (<= 0 or None: free)
    dtype: str = "float32"  # the image input's numpy dtype name

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class {index}"

    def with_overrides(self, **changes) -> Contract:
        """A copy with preprocessing fields (``size``, ``mean`` ...) or contract fields replaced."""
        pre = {k: v for k, v in changes.items() if k in FIELDS}
        rest = {k: v for k, v in changes.items() if k not in pre}
        return replace(self, preprocess=replace(self.preprocess, **pre), **rest)

    def check_input_size(self, path: str) -> None:
        """The preprocessing grid must match the image input's static spatial shape."""
        pre = self.preprocess
        spatial = self.shape[2:4] if pre.layout == "NCHW" else self.shape[1:3]
        static = [d for d in spatial if isinstance(d, int) and d > 0]
        if len(static) == 2 and tuple(static) != tuple(pre.size):
            raise ModelError(
                f"{path}: input '{self.input}' is {self.shape} ({pre.layout}) but the "
                f"preprocessing size is {list(pre.size)}; fix --input-size or the metadata"
            )


def build_contract(
    path: str,
    props: dict[str, str],
    inputs: dict[str, tuple[tuple, str]],
    outputs: list[str],
) -> Contract:
    """Contract of the model at ``path`` from its metadata and its input/output signature.

    ``inputs`` maps name -> (shape, numpy dtype name); ``outputs`` lists output names in order.
    """
    meta = decode(props)
    image = _image_input(path, meta, inputs)
    shape, dtype = inputs[image]
    declared = meta.get("outputs")
    if not isinstance(declared, dict):
        declared = {}
    saliency = _saliency_outputs(path, meta, declared, outputs)
    scores = declared.get("scores") or next((o for o in outputs if not _is_saliency(o)), None)
    if scores not in outputs:
        raise ModelError(f"{path}: metadata names scores output '{scores}', not among {outputs}")
    pre = _preprocess(path, meta, tuple(shape or ()), dtype)
    target_input = TARGET_INPUT if TARGET_INPUT in inputs else None
    labels = meta.get("labels")
    return Contract(
        input=image,
        layout=pre.layout,
        preprocess=pre,
        scores=str(scores),
        saliency=saliency,
        method=next(iter(saliency)),
        target=str(meta.get("target", "input" if target_input else "argmax")),
        target_input=target_input,
        labels=tuple(str(x) for x in labels) if isinstance(labels, list) else (),
        extra={k: v for k, v in meta.items() if k not in ("labels",)},
        shape=tuple(shape or ()),
        dtype=str(dtype),
    )


def _is_saliency(name: str) -> bool:
    return name == SALIENCY or name.startswith(SALIENCY + "_")


def _image_input(path: str, meta: dict, inputs: dict[str, tuple[tuple, str]]) -> str:
    named = meta.get("input")
    if named:
        if named not in inputs:
            raise ModelError(f"{path}: metadata names input '{named}', model has {list(inputs)}")
        return str(named)
    rank4 = [name for name, (shape, _) in inputs.items() if len(shape or ()) == 4]
    if not rank4:
        raise ModelError(f"{path}: no rank-4 image input among {list(inputs)}")
    return rank4[0]


def _saliency_outputs(path: str, meta: dict, declared: dict, outputs: list[str]) -> dict[str, str]:
    """method -> output, in output order: ``outputs.saliency_by_method`` when the metadata has
    it, else every ``saliency_<method>`` output and ``saliency`` (method from ``edgesal.method``);
    then a vision transformer's ``outputs.patch_maps`` (maps on its patch grid)."""
    by_method = declared.get("saliency_by_method")
    if isinstance(by_method, dict) and by_method:
        missing = {m: o for m, o in by_method.items() if o not in outputs}
        if missing:
            raise ModelError(f"{path}: metadata names saliency outputs {missing} not in {outputs}")
        found = {
            str(m): str(o)
            for m, o in sorted(by_method.items(), key=lambda mo: outputs.index(mo[1]))
        }
    else:
        found = _declared_methods(path, meta, declared, outputs)
    patch_maps = declared.get("patch_maps")  # a ViT's maps on its patch grid, after the others
    if isinstance(patch_maps, dict):
        found.update((str(m), str(o)) for m, o in patch_maps.items() if o in outputs)
    return found


def _declared_methods(path: str, meta: dict, declared: dict, outputs: list[str]) -> dict[str, str]:
    main = str(declared.get("saliency") or SALIENCY)
    found: dict[str, str] = {}
    for name in outputs:
        if name.startswith(SALIENCY + "_"):
            found[name[len(SALIENCY) + 1 :]] = name
        elif name == main:
            found[str(meta.get("method") or "unknown")] = name
    if not found:
        raise ModelError(
            f"{path}: model has no saliency output (expected '{SALIENCY}' or "
            f"'{SALIENCY}_<method>'; its outputs are {outputs}); export it with `edgesal export`"
        )
    return found


def _preprocess(path: str, meta: dict, shape: tuple, dtype: str) -> Preprocess:
    """Metadata preprocessing; size (when the metadata has none) and layout from the input's
    static shape; a uint8 input takes the uint8 crop (``in_graph``)."""
    raw = meta.get("preprocess")
    if not isinstance(raw, dict):
        raw = {}
    layout = str(meta.get("layout") or raw.get("layout") or guess_layout(shape))
    pre = Preprocess.from_dict({**raw, "layout": layout}, f"{path}: edgesal.preprocess")
    spatial = shape[2:4] if layout == "NCHW" else shape[1:3]
    static = len(spatial) == 2 and all(isinstance(d, int) and d > 0 for d in spatial)
    if static and "size" not in raw:  # (not an image: rank != 4, no grid to take)
        pre = replace(pre, size=(int(spatial[0]), int(spatial[1])))
    if dtype == "uint8":
        pre = replace(pre, in_graph=True, dtype="uint8")
    return pre


def guess_layout(shape: tuple) -> str:
    """NHWC when the last axis looks like channels (1 or 3) and the second does not, else NCHW."""
    return "NHWC" if len(shape) == 4 and shape[3] in (1, 3) and shape[1] not in (1, 3) else "NCHW"


def read_labels(path: str) -> tuple[str, ...]:
    """Class names from a ``--labels`` file (index = class): one name a line, or a JSON list.
    Bounded in size; a file that is missing, too large, not UTF-8 or empty is refused by name."""
    file = Path(path)
    if not file.is_file():
        raise DeviceError(f"--labels {path}: no such file")
    if file.stat().st_size > MAX_LABEL_FILE:
        raise DeviceError(f"--labels {path}: larger than 4 MB; expected one class name per line")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DeviceError(f"--labels {path}: not UTF-8 text") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise DeviceError(f"--labels {path}: not a JSON list of names ({exc})") from None
        labels = tuple(str(x) for x in names) if isinstance(names, list) else ()
    else:
        labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not labels:
        raise DeviceError(f"--labels {path}: no class names in the file")
    return labels


@dataclass(frozen=True)
class Region:
    """The part of the frame (x, y, width, height in pixels) that the model input covers."""

    x: int
    y: int
    w: int
    h: int


def model_region(frame_hw: tuple[int, int], pre: Preprocess) -> Region:
    """Frame region behind the input grid: the whole frame (``resize_shorter`` 0), else the centre
    crop of size ``size * shorter / resize_shorter``."""
    height, width = frame_hw
    if pre.resize_shorter <= 0:
        return Region(0, 0, width, height)
    scale = min(height, width) / pre.resize_shorter
    crop_h = min(height, round(pre.size[0] * scale))
    crop_w = min(width, round(pre.size[1] * scale))
    return Region((width - crop_w) // 2, (height - crop_h) // 2, crop_w, crop_h)


def resize_region(frame: np.ndarray, region: Region, size: tuple[int, int]) -> np.ndarray:
    """``region`` of the frame resized to ``size`` = [H, W]: area averaging when it shrinks both
    sides, else bilinear; a grey frame becomes three equal channels (uint8 HWC)."""
    cut = frame[region.y : region.y + region.h, region.x : region.x + region.w]
    height, width = size
    shrinking = cut.shape[0] > height and cut.shape[1] > width
    resized = cv2.resize(
        cut, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )
    return cv2.cvtColor(resized, cv2.COLOR_GRAY2BGR) if resized.ndim == 2 else resized


class Preprocessor:
    """Callable: frame -> (input tensor with batch axis, crop, region); constants precomputed.

    ``order`` is the frame's channel order: ``BGR`` as OpenCV delivers camera frames and decoded
    files (the device), ``RGB`` for the workstation's images. Both give the same tensor for the
    same picture: the resize treats channels alike, so swapping before or after it is one result.
    """

    def __init__(self, pre: Preprocess, order: str = "BGR"):
        self.pre = pre
        self.swap = order.upper() != pre.color.upper()
        scale = np.float32(1.0 / pre.pixel_scale)
        std = np.asarray(pre.std, np.float32)
        mean = np.asarray(pre.mean, np.float32)
        self._mul = np.broadcast_to(scale / std, (3,)).astype(np.float32)
        self._add = np.broadcast_to(-mean / std, (3,)).astype(np.float32)

    def resized(self, frame: np.ndarray) -> tuple[np.ndarray, Region]:
        """The region resized to the input grid, 3 channels in the frame's own order (uint8)."""
        region = model_region(frame.shape[:2], self.pre)
        return resize_region(frame, region, self.pre.size), region

    def crop(self, frame: np.ndarray) -> tuple[np.ndarray, Region]:
        """The region resized to the input grid, in the model's colour order (uint8 HWC)."""
        resized, region = self.resized(frame)
        return self.to_model_order(resized), region

    def to_model_order(self, image: np.ndarray) -> np.ndarray:
        """An HWC image in the frame's channel order -> the model's ``color`` order."""
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if self.swap else image

    def tensor(self, crop: np.ndarray) -> np.ndarray:
        """uint8 HWC crop in the model's colour order -> the input tensor (batch of one)."""
        if self.pre.in_graph:
            return crop[None] if self.pre.layout == "NHWC" else crop.transpose(2, 0, 1)[None]
        x = self._planes(crop) if self.pre.layout == "NCHW" else self._interleaved(crop)
        return x if self.pre.dtype == "float32" else x.astype(np.dtype(self.pre.dtype))

    def _planes(self, crop: np.ndarray) -> np.ndarray:
        """NCHW float32, each channel scaled and shifted by OpenCV in one pass straight into its
        plane (numpy's ``astype * mul + add`` then transpose costs 20x as much per frame)."""
        height, width, channels = crop.shape
        out = np.empty((1, channels, height, width), np.float32)
        for c, plane in enumerate(cv2.split(crop)):
            scale, shift = float(self._mul[c]), float(self._add[c])
            cv2.addWeighted(plane, scale, plane, 0.0, shift, dst=out[0, c], dtype=cv2.CV_32F)
        return out

    def _interleaved(self, crop: np.ndarray) -> np.ndarray:
        """NHWC float32 by OpenCV's per-channel multiply and add (one temporary, not three)."""
        x = cv2.multiply(crop, (*self._mul.tolist(), 0.0), dtype=cv2.CV_32F)
        cv2.add(x, (*self._add.tolist(), 0.0), dst=x)
        return x[None]

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, Region]:
        crop, region = self.crop(frame)
        return self.tensor(crop), crop, region


def rgb_crop(rgb: np.ndarray, pre: Preprocess) -> np.ndarray:
    """The RGB uint8 [H, W, 3] crop the device makes of the same picture (its BGR frame)."""
    return np.ascontiguousarray(Preprocessor(pre, "RGB").resized(rgb)[0])


def crop_tensor(crop: np.ndarray, pre: Preprocess) -> np.ndarray:
    """The input tensor [1, ...] of an RGB crop at the input size (see :func:`rgb_crop`)."""
    prep = Preprocessor(pre, "RGB")
    return prep.tensor(prep.to_model_order(np.ascontiguousarray(crop)))


def image_tensor(rgb: np.ndarray, pre: Preprocess) -> np.ndarray:
    """An RGB image -> the input tensor [1, ...] the device feeds for the same picture."""
    return crop_tensor(rgb_crop(rgb, pre), pre)


def map_to_frame(saliency: np.ndarray, region: Region, frame_hw: tuple[int, int]) -> np.ndarray:
    """The [H, W] input-grid map resized onto ``region`` of a zero frame-sized map (float32)."""
    full = np.zeros(frame_hw, np.float32)
    resized = cv2.resize(
        saliency.astype(np.float32), (region.w, region.h), interpolation=cv2.INTER_LINEAR
    )
    full[region.y : region.y + region.h, region.x : region.x + region.w] = resized
    return full
