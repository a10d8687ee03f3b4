"""The saliency-model contract read from ``edgesal.*`` metadata (``edgesal/metadata.py``).

Parsed with :mod:`json` only, so a device needs neither the ``onnx`` package nor ``edgesal``. Field
names follow ``edgesal.metadata``: ``input``, ``layout``, ``method``, ``target``, ``labels``,
``outputs`` (``{"scores": NAME, "saliency": NAME}``) and ``preprocess`` (:class:`Preprocess`).
Command-line flags override any of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from edgesal.runtimes.errors import DeviceError, ModelError

PREFIX = "edgesal."
MAX_LABEL_FILE = 4 << 20
SALIENCY = "saliency"
TARGET_INPUT = "target"


@dataclass(frozen=True)
class Preprocess:
    """Frame -> input tensor: resize (shorter side, or straight to ``size``), centre crop to
    ``size`` = [H, W], then ``(pixel / pixel_scale - mean) / std`` unless ``in_graph``."""

    size: tuple[int, int] = (224, 224)
    color: str = "RGB"
    resize_shorter: int = 0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pixel_scale: float = 255.0
    in_graph: bool = False
    dtype: str = "float32"
    layout: str = "NCHW"

    @classmethod
    def from_dict(cls, data: dict) -> Preprocess:
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)


@dataclass(frozen=True)
class Contract:
    """What the runtime needs to feed the model and read its answer."""

    input: str
    layout: str
    preprocess: Preprocess
    scores: str
    saliency: dict[str, str]  # method -> output name
    method: str = "unknown"
    target: str = "argmax"
    target_input: str | None = None
    labels: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class {index}"

    def with_overrides(self, **changes) -> Contract:
        """A copy with preprocessing fields (``size``, ``mean`` ...) or contract fields replaced."""
        pre = {k: v for k, v in changes.items() if k in Preprocess.__dataclass_fields__}
        rest = {k: v for k, v in changes.items() if k not in pre}
        return replace(self, preprocess=replace(self.preprocess, **pre), **rest)


def decode(props: dict[str, str]) -> dict[str, object]:
    """The ``edgesal.*`` entries without the prefix, JSON values decoded (plain strings kept)."""
    result: dict[str, object] = {}
    for key, value in props.items():
        if key.startswith(PREFIX):
            try:
                result[key[len(PREFIX) :]] = json.loads(value)
            except (json.JSONDecodeError, TypeError):
                result[key[len(PREFIX) :]] = value
    return result


def build_contract(
    path: str,
    props: dict[str, str],
    inputs: dict[str, tuple[tuple, str]],
    outputs: list[str],
) -> Contract:
    """Contract of the model at ``path`` from its metadata and its input/output signature.

    ``inputs`` maps name -> (shape, dtype name); ``outputs`` lists output names in order.
    """
    meta = decode(props)
    image = _image_input(path, meta, inputs)
    shape, dtype = inputs[image]
    declared = meta.get("outputs") if isinstance(meta.get("outputs"), dict) else {}
    saliency = _saliency_outputs(path, meta, declared, outputs)
    scores = str(declared.get("scores") or next(o for o in outputs if not _is_saliency(o)))
    if scores not in outputs:
        raise ModelError(f"{path}: metadata names scores output '{scores}', not among {outputs}")
    pre = _preprocess(meta, shape, dtype)
    target_input = TARGET_INPUT if TARGET_INPUT in inputs else None
    labels = meta.get("labels")
    return Contract(
        input=image,
        layout=pre.layout,
        preprocess=pre,
        scores=scores,
        saliency=saliency,
        method=next(iter(saliency)),
        target=str(meta.get("target", "input" if target_input else "argmax")),
        target_input=target_input,
        labels=tuple(str(x) for x in labels) if isinstance(labels, list) else (),
        extra={k: v for k, v in meta.items() if k not in ("labels",)},
    )


def _is_saliency(name: str) -> bool:
    return name == SALIENCY or name.startswith(SALIENCY + "_")


def _image_input(path: str, meta: dict, inputs: dict[str, tuple[tuple, str]]) -> str:
    named = meta.get("input")
    if named:
        if named not in inputs:
            raise ModelError(f"{path}: metadata names input '{named}', model has {list(inputs)}")
        return str(named)
    rank4 = [name for name, (shape, _) in inputs.items() if len(shape) == 4]
    if not rank4:
        raise ModelError(f"{path}: no rank-4 image input among {list(inputs)}")
    return rank4[0]


def _saliency_outputs(path: str, meta: dict, declared: dict, outputs: list[str]) -> dict[str, str]:
    """method -> output, in output order: ``outputs.saliency_by_method`` when the metadata has
    it, else every ``saliency_<method>`` output and ``saliency`` (method from ``edgesal.method``).
    """
    by_method = declared.get("saliency_by_method")
    if isinstance(by_method, dict) and by_method:
        missing = {m: o for m, o in by_method.items() if o not in outputs}
        if missing:
            raise ModelError(f"{path}: metadata names saliency outputs {missing} not in {outputs}")
        return {
            str(m): str(o)
            for m, o in sorted(by_method.items(), key=lambda mo: outputs.index(mo[1]))
        }
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


def _preprocess(meta: dict, shape: tuple, dtype: str) -> Preprocess:
    """Metadata preprocessing, with size and layout completed from the input's static shape."""
    raw = meta.get("preprocess") if isinstance(meta.get("preprocess"), dict) else {}
    layout = str(meta.get("layout") or raw.get("layout") or _guess_layout(shape))
    pre = Preprocess.from_dict({**raw, "layout": layout})
    spatial = shape[2:4] if layout == "NCHW" else shape[1:3]
    if all(isinstance(d, int) and d > 0 for d in spatial) and "size" not in raw:
        pre = replace(pre, size=(int(spatial[0]), int(spatial[1])))
    if dtype == "uint8":
        pre = replace(pre, in_graph=True, dtype="uint8")
    return pre


def _guess_layout(shape: tuple) -> str:
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
        except json.JSONDecodeError as exc:
            raise DeviceError(f"--labels {path}: not a JSON list of names ({exc})") from None
        labels = tuple(str(x) for x in names) if isinstance(names, list) else ()
    else:
        labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not labels:
        raise DeviceError(f"--labels {path}: no class names in the file")
    return labels
