"""``edgesal eval`` and ``edgesal compare``: plan tasks, run them on an engine, write the report.

The driver crops the images, maps boxes onto the crops, splits the work into tasks (one per image,
one per sanity-check step), runs them through :func:`~edgesal.eval.engines.run_tasks` (resumable,
any engine) and turns the results into ``report.json``, ``report.html`` and PNGs.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgesal import __version__
from edgesal.errors import InputError, ModelLoadError
from edgesal.eval import report, sanity, tflite
from edgesal.eval.engines import SerialEngine, run_tasks
from edgesal.eval.images import CropTransform, check_images
from edgesal.eval.model import ModelSpec, inspect
from edgesal.eval.options import EvalOptions
from edgesal.eval.pointing import Box, boxes_for, load_boxes, parse_boxes
from edgesal.eval.store import ResultStore, fingerprint
from edgesal.eval.summary import summarize_compare, summarize_maps, summarize_sanity
from edgesal.eval.tasks import CompareTask, ImageTask, Job, SanityTask
from edgesal.onnx_io import is_tflite, load_model
from edgesal.runtimes.contract import rgb_crop

WORK = ".work"


@dataclass
class Loaded:
    """A saliency model read from a file or given in memory, with its bytes and contract."""

    model: onnx.ModelProto | None  # None: a TFLite model (compared, not evaluated)
    data: bytes
    spec: ModelSpec
    where: str

    @classmethod
    def of(cls, model: onnx.ModelProto | str | Path, where: str | None = None) -> Loaded:
        """An ONNX saliency model."""
        if isinstance(model, str | Path):
            where = where or str(model)
            if _is_tflite_file(Path(model)):
                raise InputError(
                    f"{model}: a TFLite model; eval reads ONNX models (compare the .tflite with "
                    f"its ONNX source: edgesal compare MODEL.sal.onnx {model} --images ...)"
                )
            model = load_model(model)
        where = where or "model"
        return cls(model, model.SerializeToString(), inspect(model, where), where)

    @classmethod
    def either(
        cls, model: onnx.ModelProto | bytes | str | Path, where: str | None = None
    ) -> Loaded:
        """An ONNX or a TFLite saliency model: TFLite by its ``.tflite`` suffix or its flatbuffer
        identifier; its spec is read from an interpreter, so a missing runtime fails here."""
        if isinstance(model, str | Path):
            path = Path(model)
            if not path.is_file():
                raise ModelLoadError(f"{path}: no such file")
            if not _is_tflite_file(path):
                return cls.of(path, where)
            return cls.from_tflite(path.read_bytes(), where or str(path))
        if isinstance(model, bytes):
            if not is_tflite(model):
                raise ModelLoadError(f"{where or 'model'}: bytes that are not a TFLite flatbuffer")
            return cls.from_tflite(model, where or "model")
        return cls.of(model, where)

    @classmethod
    def from_tflite(cls, data: bytes, where: str) -> Loaded:
        """A TFLite saliency model from its flatbuffer bytes (interpreter and spec checked)."""
        return cls(None, data, tflite.TFLiteRunner(data, where).spec, where)

    def describe(self) -> dict:
        return {
            "where": self.where,
            "format": self.spec.format,
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "methods": list(self.spec.saliency),
            "outputs": self.spec.saliency,
            "target": self.spec.target,
            "input": {"name": self.spec.input, "shape": list(self.spec.shape)},
            "layout": self.spec.layout,
            "dtype": self.spec.dtype,
        }


def _is_tflite_file(path: Path) -> bool:
    """A ``.tflite`` suffix, or the flatbuffer identifier whatever the suffix."""
    if path.suffix.lower() == ".tflite":
        return True
    if not path.is_file():
        return False
    with path.open("rb") as head:
        return is_tflite(head.read(8))


def _digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()[:12]


def crops_of(images: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    check_images(images)
    return {name: rgb_crop(rgb, spec.preprocess) for name, rgb in sorted(images.items())}


def crop_boxes(
    images: dict[str, np.ndarray], boxes: dict[str, list[Box]], spec: ModelSpec, source: str
) -> dict[str, tuple[Box, ...]]:
    """Every image's boxes on its crop; an image with no entry in the boxes file is an error."""
    missing = [name for name in sorted(images) if boxes_for(boxes, name) is None]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise InputError(
            f"--boxes {source}: no boxes for {len(missing)} of {len(images)} images ({shown}); "
            "the pointing game needs a box for every image"
        )
    result = {}
    for name, rgb in images.items():
        transform = CropTransform.of(rgb.shape[:2], spec.preprocess)
        result[name] = tuple(transform.box(b) for b in boxes_for(boxes, name) or [])
    return result


def _boxes_on_crops(images: dict, boxes: dict | str | Path, spec: ModelSpec) -> dict:
    """``boxes``: a boxes file, or its decoded content (see :mod:`edgesal.eval.pointing`)."""
    if isinstance(boxes, str | Path):
        return crop_boxes(images, load_boxes(boxes), spec, str(boxes))
    return crop_boxes(images, parse_boxes(boxes), spec, "boxes")


def evaluate(
    model: onnx.ModelProto | str | Path,
    images: dict[str, np.ndarray],
    out: str | Path,
    options: EvalOptions | None = None,
    boxes: dict | str | Path | None = None,
    engine=None,
    progress: bool = False,
    resume: bool = True,
    randomizer: sanity.Randomizer | None = None,
) -> dict:
    """Audit saliency model ``model`` on ``images`` ({name: RGB uint8}); writes ``out/report.json``,
    ``out/report.html`` and PNGs, and returns the report."""
    opts = options or EvalOptions()
    opts.validate()
    started = time.time()
    loaded = Loaded.of(model)
    crops = crops_of(images, loaded.spec)
    on_crop = _boxes_on_crops(images, boxes, loaded.spec) if boxes is not None else {}
    job = Job(loaded.data, loaded.where, opts, randomizer=randomizer)
    tasks: list = []
    counts: list[int] = []
    if opts.sanity_images:
        job.sanity_images = list(crops.items())[: opts.sanity_images]
        counts = _sanity_counts(loaded, opts)
        group = "+".join(_digest(c) for _, c in job.sanity_images)
        tasks.append(SanityTask(f"sanity:original:{group}", "original"))
        for mode in opts.sanity_modes:
            tasks += [SanityTask(f"sanity:{mode}:{i}:{group}", mode, i) for i in range(len(counts))]
    for name, crop in crops.items():
        box = on_crop.get(name) if boxes is not None else None
        key = f"image:{name}:{_digest(crop)}:{json.dumps(box)}"
        tasks.append(ImageTask(key, name, crop, box))
    engine = engine or SerialEngine()
    store = _store(out, resume, loaded.data, opts.to_json(), repr(randomizer))
    results, run = run_tasks(engine, job, tasks, store, progress, "eval")
    per_image = [results[t.key] for t in tasks if isinstance(t, ImageTask)]
    numbers = [n for n, _ in per_image]
    result = {
        "kind": "eval",
        "edgesal_version": __version__,
        "model": loaded.describe(),
        "options": opts.to_json(),
        "run": {**run, "engine": engine.name, "seconds": time.time() - started},
        "images": numbers,
        "summary": {
            "methods": summarize_maps(numbers, "methods"),
            "controls": summarize_maps(numbers, "controls"),
        },
        "sanity": _sanity_section(tasks, results, opts) if opts.sanity_images else None,
    }
    maps = {n["name"]: {k[4:]: v for k, v in a.items()} for n, a in per_image}
    thumbs = _sanity_thumbnails(tasks, results)
    report.write_eval(Path(out), result, crops, maps, thumbs)
    return result


def _sanity_counts(loaded: Loaded, opts: EvalOptions) -> list[int]:
    """The cascade's layer counts (checked here, before any work, so bad flags fail fast)."""
    forward = sanity.forward_of(loaded.model, loaded.spec)
    return sanity.checkpoint_counts(len(sanity.parametric_layers(forward)), opts.sanity_steps)


def _store(out, resume: bool, *parts) -> ResultStore | None:
    if not resume:
        return None
    return ResultStore(Path(out) / WORK / fingerprint(*parts))


def _sanity_section(tasks: list, results: dict, opts: EvalOptions) -> dict:
    by_mode: dict[str, list[dict]] = {}
    for task in tasks:
        if isinstance(task, SanityTask):
            by_mode.setdefault(task.mode, []).append(results[task.key][0])
    original = by_mode.pop("original")[0]
    steps = {mode: by_mode[mode] for mode in opts.sanity_modes}
    return summarize_sanity(original, steps, opts.sanity_threshold)


def _sanity_thumbnails(tasks: list, results: dict) -> dict[str, list[dict[str, np.ndarray]]]:
    """``{mode: [per step {"<method>/<image>": thumbnail}]}`` with the original as "original"."""
    found: dict[str, list] = {}
    for task in tasks:
        if isinstance(task, SanityTask):
            arrays = results[task.key][1]
            found.setdefault(task.mode, []).append({k[6:]: v for k, v in arrays.items()})
    return found


def compare(
    model_a: onnx.ModelProto | bytes | str | Path,
    model_b: onnx.ModelProto | bytes | str | Path,
    images: dict[str, np.ndarray],
    out: str | Path,
    options: EvalOptions | None = None,
    top_k: float = 0.1,
    engine=None,
    progress: bool = False,
    resume: bool = True,
) -> dict:
    """Fidelity of saliency model ``b`` to ``a`` (float vs int8, ONNX vs TFLite, ...) on
    ``images``; each model is ONNX or TFLite (a ``.tflite`` path or flatbuffer bytes), fed the same
    crop in its own layout and preprocessing, B's maps compared on A's grid."""
    opts = options or EvalOptions()
    opts.validate()
    if not 0 < top_k <= 1:
        raise InputError(f"--top-k {top_k}: must be a fraction in (0, 1]")
    started = time.time()
    a, b = Loaded.either(model_a), Loaded.either(model_b)
    common = [m for m in a.spec.saliency if m in b.spec.saliency]
    if not common:
        raise InputError(
            f"{a.where} has maps {list(a.spec.saliency)} and {b.where} has "
            f"{list(b.spec.saliency)}: no method in common to compare"
        )
    if tuple(a.spec.size) != tuple(b.spec.size):
        raise InputError(f"{a.where} takes {a.spec.size} images but {b.where} takes {b.spec.size}")
    _check_same_classes(a.spec, b.spec)
    crops = crops_of(images, a.spec)
    job = Job(a.data, a.where, opts, other=b.data, other_where=b.where, top_k=top_k)
    tasks = [CompareTask(f"compare:{n}:{_digest(c)}", n, c) for n, c in crops.items()]
    engine = engine or SerialEngine()
    store = _store(out, resume, a.data, b.data, opts.to_json(), str(top_k))
    results, run = run_tasks(engine, job, tasks, store, progress, "compare")
    numbers = [results[t.key][0] for t in tasks]
    result = {
        "kind": "compare",
        "edgesal_version": __version__,
        "model_a": a.describe(),
        "model_b": b.describe(),
        "methods": common,
        "top_k": top_k,
        "run": {**run, "engine": engine.name, "seconds": time.time() - started},
        "images": numbers,
        "summary": summarize_compare(numbers),
    }
    maps = {t.name: results[t.key][1] for t in tasks}
    report.write_compare(Path(out), result, crops, maps)
    return result


def _check_same_classes(a: ModelSpec, b: ModelSpec) -> None:
    """Top-1 agreement and B's probability of A's class need the same classes on both sides."""
    if a.classes and b.classes and a.classes != b.classes:
        raise InputError(f"{a.where} scores {a.classes} classes but {b.where} scores {b.classes}")
