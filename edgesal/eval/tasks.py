"""The units of work of an audit and the worker that runs them, whatever the engine.

A :class:`Job` is what every worker holds (the model bytes, the options, the sanity images); a
task is one image, one sanity-check step or one image pair to compare. ``Worker.run(task)``
returns ``(numbers, arrays)``: JSON-able results and the maps, which the driver stores so a killed
audit resumes without recomputing finished tasks. Workers make their sessions once, on first use.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np
import onnx

from edgesal.errors import InputError
from edgesal.eval import perturb, sanity
from edgesal.eval.controls import random_map
from edgesal.eval.model import Explained, Runner, SaliencyRunner, inspect, pixels_of
from edgesal.eval.options import EvalOptions
from edgesal.eval.pointing import Box, pointing_hit
from edgesal.eval.road import road_curves
from edgesal.eval.similarity import spearman, ssim, top_k_iou
from edgesal.eval.stability import max_sensitivity
from edgesal.eval.tflite import TFLiteRunner
from edgesal.export import export_saliency
from edgesal.onnx_io import is_tflite

Result = tuple[dict, dict[str, np.ndarray]]
THUMBNAIL = 64


def open_runner(data: bytes, where: str, threads: int = 1, batch: int = 32) -> SaliencyRunner:
    """The runner of a saliency model's file bytes, ONNX or TFLite."""
    if is_tflite(data):
        return TFLiteRunner(data, where, threads)
    model = onnx.load_from_string(data)
    return Runner(model, inspect(model, where), threads, batch)


@dataclass
class Job:
    """What every worker needs: the model(s) as bytes, so they travel to any process or node."""

    model: bytes
    where: str
    options: EvalOptions
    sanity_images: list[tuple[str, np.ndarray]] = field(default_factory=list)
    randomizer: sanity.Randomizer | None = None  # None: sanity.default_randomizer(seed)
    other: bytes | None = None  # compare: the second saliency model
    other_where: str = ""
    top_k: float = 0.1


@dataclass(frozen=True)
class ImageTask:
    """Every metric of every map of one image."""

    key: str
    name: str
    crop: np.ndarray  # RGB uint8 on the model's input grid
    boxes: tuple[Box, ...] | None = None  # on the crop; None: no pointing game

    def run(self, worker: Worker) -> Result:
        return evaluate_image(worker.runner, self, worker.opts)


@dataclass(frozen=True)
class SanityTask:
    """One step of a sanity check ("original": the reference maps and the random-logit check)."""

    key: str
    mode: str  # "original", "cascading" or "independent"
    step: int = 0

    def run(self, worker: Worker) -> Result:
        return worker.sanity.run(self)


@dataclass(frozen=True)
class CompareTask:
    """Model B's maps against model A's on one image."""

    key: str
    name: str
    crop: np.ndarray

    def run(self, worker: Worker) -> Result:
        return compare_image(worker.runner, worker.other, self, worker.job.top_k)


def seed_for(*parts: int | str) -> list[int]:
    """A seed sequence from strings and ints, the same in every process."""
    return [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]


class Worker:
    """Runs tasks of one job; holds one session set, made on first use."""

    def __init__(self, job: Job):
        self.job, self.opts = job, job.options
        self._runner: SaliencyRunner | None = None
        self._other: SaliencyRunner | None = None
        self._sanity: SanityState | None = None

    @property
    def runner(self) -> SaliencyRunner:
        if self._runner is None:
            self._runner = _runner(self.job.model, self.job.where, self.opts)
        return self._runner

    @property
    def other(self) -> SaliencyRunner:
        if self._other is None:
            self._other = _runner(self.job.other, self.job.other_where, self.opts)
        return self._other

    @property
    def sanity(self) -> SanityState:
        if self._sanity is None:
            self._sanity = SanityState(self.job, self.runner)
        return self._sanity

    def run(self, task) -> Result:
        """``task.run(self)``: any task type with that method runs on any engine."""
        return task.run(self)


def _runner(data: bytes | None, where: str, opts: EvalOptions) -> SaliencyRunner:
    """The runner of an ONNX or TFLite saliency model's bytes (eval itself takes ONNX only)."""
    if data is None:
        raise InputError("compare needs a second model")
    return open_runner(data, where, opts.threads, opts.batch)


def evaluate_image(runner: Runner, task: ImageTask, opts: EvalOptions) -> Result:
    """Every per-image metric for each of the model's maps and each control."""
    spec = runner.spec
    pixels = pixels_of(task.crop, spec.preprocess)
    ex = runner.explain(pixels)
    _check_grid(ex, spec.size, spec.where)
    controls = {}
    if "random" in opts.controls:
        controls["random"] = random_map(ex.sobel.shape, task.name, opts.seed)
    if "sobel" in opts.controls:
        controls["sobel"] = ex.sobel
    scored = {**ex.maps, **controls}
    results = {
        name: map_scores(runner, pixels, saliency, ex.target, opts, task.name, name, task.boxes)
        for name, saliency in scored.items()
    }
    if opts.sensitivity_samples:
        fixed = ex.target if spec.target_input else None
        sens = max_sensitivity(
            lambda p: runner.explain(p, fixed).maps,
            pixels,
            ex.maps,
            opts.sensitivity_radius,
            opts.sensitivity_samples,
            np.random.default_rng(seed_for(opts.seed, task.name, "sensitivity")),
        )
        for method, value in sens.items():
            results[method]["max_sensitivity"] = value
    top = int(np.argmax(ex.probs))
    numbers = {
        "name": task.name,
        "class": top,
        "label": spec.label(top),
        "prob": float(ex.probs[top]),
        "target": ex.target,
        "target_prob": float(ex.probs[ex.target]),
        "methods": {m: results[m] for m in ex.maps},
        "controls": {c: results[c] for c in controls},
    }
    return numbers, {f"map/{m}": v for m, v in ex.maps.items()}


def _check_grid(ex: Explained, size: tuple[int, int], where: str) -> None:
    for method, saliency in ex.maps.items():
        if saliency.shape != tuple(size):
            raise InputError(
                f"{where}: map '{method}' is {saliency.shape}, not on the input grid {size}"
            )


def map_scores(
    runner: Runner,
    pixels: np.ndarray,
    saliency: np.ndarray,
    target: int,
    opts: EvalOptions,
    image: str,
    name: str,
    boxes: tuple[Box, ...] | None = None,
) -> dict:
    """Deletion, insertion, ROAD and (with ``boxes``) pointing game of map ``name`` of ``image``."""
    predict = runner.predict
    deletion = perturb.deletion(
        predict, pixels, saliency, target, opts.steps, opts.deletion_baseline
    )
    insertion = perturb.insertion(
        predict, pixels, saliency, target, opts.steps, opts.insertion_canvas
    )
    scores: dict = {
        "deletion_auc": perturb.auc(deletion),
        "insertion_auc": perturb.auc(insertion),
        "deletion": deletion.tolist(),
        "insertion": insertion.tolist(),
    }
    if opts.road_fractions:
        seed = seed_for(opts.seed, image, name, "road")
        road = road_curves(
            predict, pixels, saliency, target, list(opts.road_fractions), opts.road_noise, seed
        )
        scores["road_morf"] = road["morf"].tolist()
        scores["road_lerf"] = road["lerf"].tolist()
        scores["road_morf_mean"] = float(road["morf"].mean())
        scores["road_lerf_mean"] = float(road["lerf"].mean())
    if boxes is not None:
        scores["pointing"] = pointing_hit(saliency, list(boxes), opts.tolerance)
    return scores


def compare_image(a: SaliencyRunner, b: SaliencyRunner, task: CompareTask, top_k: float) -> Result:
    """Fidelity of model ``b``'s maps to model ``a``'s on one image (both explain a's class
    when ``b`` takes a target input)."""
    ea = a.explain(pixels_of(task.crop, a.spec.preprocess))
    eb = b.explain(
        pixels_of(task.crop, b.spec.preprocess), ea.target if b.spec.target_input else None
    )
    common = [m for m in ea.maps if m in eb.maps]
    methods = {}
    for m in common:
        ma, mb = ea.maps[m], _on_grid(eb.maps[m], ea.maps[m].shape)
        methods[m] = {
            "spearman": spearman(ma, mb),
            "ssim": ssim(ma, mb),
            "top_k_iou": top_k_iou(ma, mb, top_k),
        }
    top_a, top_b = int(np.argmax(ea.probs)), int(np.argmax(eb.probs))
    numbers = {
        "name": task.name,
        "class_a": top_a,
        "class_b": top_b,
        "label_a": a.spec.label(top_a),
        "label_b": b.spec.label(top_b),
        "top1_agree": top_a == top_b,
        "prob_a": float(ea.probs[top_a]),
        "prob_b": float(eb.probs[top_a]) if top_a < len(eb.probs) else float("nan"),
        "methods": methods,
    }
    arrays = {f"a/{m}": ea.maps[m] for m in common} | {f"b/{m}": eb.maps[m] for m in common}
    return numbers, arrays


def _on_grid(saliency: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if saliency.shape == shape:
        return saliency
    return cv2.resize(saliency, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def thumbnail(saliency: np.ndarray) -> np.ndarray:
    return cv2.resize(saliency, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA).astype(
        np.float16
    )


class SanityState:
    """A worker's view of the sanity check: the forward network, its layers, the original maps."""

    def __init__(self, job: Job, runner: Runner):
        opts = job.options
        model = onnx.load_from_string(job.model)
        spec = runner.spec
        self.opts = opts
        self.forward = sanity.forward_of(model, spec)
        self.layers = sanity.parametric_layers(self.forward)
        self.counts = sanity.checkpoint_counts(len(self.layers), opts.sanity_steps)
        self.options = sanity.export_options(model, spec)
        self.randomizer = job.randomizer or sanity.default_randomizer(opts.seed)
        self.names = [name for name, _ in job.sanity_images]
        self.pixels = [pixels_of(crop, spec.preprocess) for _, crop in job.sanity_images]
        if not self.pixels:
            raise InputError("sanity check: no images")
        self.user_maps = [runner.explain(p) for p in self.pixels]
        self.targets = [ex.target for ex in self.user_maps]
        self.original = self._maps(self.forward)

    def _variant(self, forward: onnx.ModelProto) -> Runner:
        exported = export_saliency(forward, self.options)
        return Runner(exported, inspect(exported, "sanity variant"), self.opts.threads)

    def _maps(self, forward: onnx.ModelProto, targets: list[int] | None = None) -> list[dict]:
        """Per image ``{method: map, "sobel": map}`` of the re-exported ``forward``."""
        variant = self._variant(forward)
        explained = [
            variant.explain(p, t) for p, t in zip(self.pixels, targets or self.targets, strict=True)
        ]
        return [{**ex.maps, "sobel": ex.sobel} for ex in explained]

    def chosen(self, mode: str, step: int) -> list[int]:
        """Layer indices randomized at ``step`` of ``mode``."""
        if mode == "cascading":
            return sanity.top_layers(self.layers, self.counts[step])
        ranked = [layer.index for layer in reversed(self.layers)]
        return [ranked[i] for i in sanity.groups(self.counts)[step]]

    def run(self, task: SanityTask) -> Result:
        if task.mode == "original":
            return self._original()
        chosen = self.chosen(task.mode, task.step)
        maps = self._maps(sanity.randomized(self.forward, self.layers, chosen, self.randomizer))
        numbers = {
            "mode": task.mode,
            "step": task.step,
            "layers": len(chosen),
            "deepest": self.layers[min(chosen)].node,
            "similarity": _similarities(self.original, maps),
        }
        return numbers, _thumbnails(maps)

    def _original(self) -> Result:
        """The pipeline check (re-exported maps = the model's own) and the random-logit check."""
        classes = len(self.user_maps[0].probs)
        others = []
        for name, target in zip(self.names, self.targets, strict=True):
            rng = np.random.default_rng(seed_for(self.opts.seed, name, "logit"))
            other = int(rng.integers(0, classes - 1))
            others.append(other + (other >= target))
        pipeline = [
            {m: spearman(user.maps[m], mine[m]) for m in user.maps}
            for user, mine in zip(self.user_maps, self.original, strict=True)
        ]
        numbers = {
            "images": self.names,
            "targets": self.targets,
            "layers": [
                {"index": x.index, "node": x.node, "op_type": x.op_type, "weights": list(x.weights)}
                for x in self.layers
            ],
            "counts": self.counts,
            "export": sanity.options_summary(self.options),
            "pipeline_spearman": pipeline,
        }
        if self.opts.random_logit and classes > 1:
            numbers["random_logit"] = {
                "classes": others,
                "similarity": _similarities(self.original, self._maps(self.forward, others)),
            }
        return numbers, _thumbnails(self.original)


def _similarities(reference: list[dict], maps: list[dict]) -> dict:
    """``{method: {"spearman": [per image], "ssim": [per image]}}``."""
    result: dict = {}
    for ref, new in zip(reference, maps, strict=True):
        for method, original in ref.items():
            entry = result.setdefault(method, {"spearman": [], "ssim": []})
            entry["spearman"].append(spearman(np.abs(original), np.abs(new[method])))
            entry["ssim"].append(ssim(np.abs(original), np.abs(new[method])))
    return result


def _thumbnails(maps: list[dict]) -> dict[str, np.ndarray]:
    return {
        f"thumb/{method}/{i}": thumbnail(m)
        for i, per in enumerate(maps)
        for method, m in per.items()
    }
