"""Saliency models: one call returns the class scores and (when asked) the saliency map.

A :class:`Variant` is one saliency output of one model file; a :class:`MethodChain` orders the
variants from the preferred method to the cheapest, which is what the budget governor walks when
the device runs hot (e.g. ``integrated -> vanilla -> gradcam``). Variants come from several files
(``--model a.onnx --fallback b.onnx``) and/or several ``saliency_<method>`` outputs of one file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesal.runtimes.backends import Backend, BackendOptions, load_backend
from edgesal.runtimes.backends.base import MAX_INPUT_BYTES, check_input_bytes
from edgesal.runtimes.contract import Contract, Preprocess, Preprocessor, build_contract
from edgesal.runtimes.detections import (
    BoxSpec,
    Detection,
    batch_of,
    chunks,
    element_box,
    element_output,
    top_elements,
)
from edgesal.runtimes.errors import ModelError

log = logging.getLogger("edgesal.runtimes.model")
MODEL_SUFFIXES = (".onnx", ".tflite")


@dataclass
class Inference:
    """The answer for one frame; ``saliency`` is [H, W] on an image's grid (a vision
    transformer's patch-grid maps: [H/p, W/p]; a non-image input's map keeps its per-sample
    shape, e.g. [T, F]), or None when skipped."""

    probs: np.ndarray
    target: int
    saliency: np.ndarray | None
    method: str
    seconds: float

    @property
    def top1(self) -> int:
        return int(np.argmax(self.probs))

    def top(self, k: int = 3) -> list[tuple[int, float]]:
        order = np.argsort(-self.probs)[:k]
        return [(int(i), float(self.probs[i])) for i in order]


def probabilities(scores: np.ndarray) -> np.ndarray:
    """softmax(scores), unless the scores already are a distribution (in [0, 1], summing to 1)."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    if scores.size and scores.min() >= 0 and abs(scores.sum() - 1.0) < 1e-3:
        return scores
    shifted = np.exp(scores - scores.max())
    return shifted / shifted.sum()


def check_input_budget(
    path: str, name: str, shape: tuple, pre: Preprocess, limit: int = MAX_INPUT_BYTES
) -> None:
    """bytes = prod(dims) * itemsize of the tensor one frame becomes (spatial dims from
    ``pre.size``, other dynamic dims 1, dynamic channels 3), refused above ``limit`` before any
    frame is resized into it: a model declaring a 100000 x 100000 input would need 120 GB."""
    size = tuple(pre.size)
    if len(size) != 2 or not all(isinstance(d, int) and d > 0 for d in size):
        raise ModelError(f"{path}: input size {list(size)} is not two positive integers (H, W)")
    dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
    if len(dims) == 4:
        (h, w), c = ((2, 3), 1) if pre.layout == "NCHW" else ((1, 2), 3)
        dims[h], dims[w] = size
        dims[c] = dims[c] if isinstance(shape[c], int) and shape[c] > 0 else 3
    check_input_bytes(path, name, dims, 1 if pre.in_graph or pre.dtype == "uint8" else 4, limit)


def _as_map(value: np.ndarray, name: str, path: str, image: bool = True) -> np.ndarray:
    if not image:  # audio, series, tabular: the map as the model lays it out (edgesal.map_axes)
        return np.asarray(value, np.float32)[0]
    squeezed = np.asarray(value, np.float32)[0].squeeze()
    if squeezed.ndim != 2:
        raise ModelError(f"{path}: output '{name}' has shape {value.shape}; expected [N,H,W]")
    return squeezed


class Variant:
    """One method of one model: ``run`` feeds the image (and the target) and reads the outputs."""

    def __init__(self, backend: Backend, contract: Contract, method: str):
        self.backend, self.contract, self.method = backend, contract, method
        self.output = contract.saliency[method]
        self.preprocessor = Preprocessor(contract.preprocess)
        self.path = backend.path
        self.image = str(contract.extra.get("modality") or "image") == "image"
        self.element_output = element_output(contract.target)  # detectors: the scored output
        self.boxes = BoxSpec.from_metadata(contract.extra.get("boxes"), self.path)

    @property
    def name(self) -> str:
        return f"{self.method} ({Path(self.path).name})"

    def feeds(
        self, tensor: np.ndarray, target: int | None, extra: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """The input tensor, the target (when the model takes one) and the other inputs: those in
        ``extra`` (a streaming cache, a mask), zeros for the rest (an empty cache)."""
        self._check_shape(tensor)
        feeds = {self.contract.input: tensor}
        if self.contract.target_input:
            feeds[self.contract.target_input] = np.array([target or 0], np.int64)
        return {**feeds, **self._other_inputs(len(tensor), extra or {}, set(feeds))}

    def _check_shape(self, tensor: np.ndarray) -> None:
        """A tensor whose static dims disagree with the model's input is refused by name (the
        backend's own message names neither the model nor the input's expected shape)."""
        shape, _ = self.backend.inputs[self.contract.input]
        fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
        got = np.shape(tensor)
        if len(got) != len(fixed) or any(
            f not in (None, g) for f, g in zip(fixed, got, strict=True)
        ):
            wanted = [d if d is not None else "?" for d in fixed]
            raise ModelError(
                f"{self.path}: input '{self.contract.input}' takes {wanted}; got an array of "
                f"shape {list(got)}"
            )

    def _other_inputs(self, batch: int, extra: dict[str, np.ndarray], fed: set[str]) -> dict:
        unknown = sorted(set(extra) - set(self.backend.inputs))
        if unknown:
            raise ModelError(f"{self.path}: no inputs named {unknown} (inputs: {self.inputs})")
        values = {}
        for name, (shape, dtype) in self.backend.inputs.items():
            if name in fed:
                continue
            value = extra.get(name)
            if value is None:
                dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
                value = np.zeros([batch, *dims[1:]] if dims else [], dtype)
            elif len(value) != batch and len(value) == 1:
                value = np.repeat(value, batch, axis=0)
            values[name] = value
        return values

    @property
    def inputs(self) -> list[str]:
        return list(self.backend.inputs)

    def run(
        self,
        tensor: np.ndarray,
        target: int | None,
        want_map: bool = True,
        extra: dict[str, np.ndarray] | None = None,
    ) -> Inference:
        """Scores (and the map when ``want_map``) for one input tensor; a prediction-only run uses
        a graph pruned to the scores where the backend can prune. ``extra`` feeds the model's
        other inputs (zeros when left out)."""
        wanted = [self.contract.scores, self.output] if want_map else [self.contract.scores]
        backend = self.backend.subset(wanted)
        start = time.perf_counter()
        values = backend.run(wanted, self.feeds(tensor, target, extra))
        seconds = time.perf_counter() - start
        probs = probabilities(values[0][0] if values[0].ndim > 1 else values[0])
        if self.contract.target_input:  # the fed target (feeds: None feeds class 0)
            explained = target or 0
            self._check_target(explained, probs.size)
        else:
            explained = self._fixed_target(probs)
        saliency = _as_map(values[1], self.output, self.path, self.image) if want_map else None
        return Inference(probs, explained, saliency, self.method, seconds)

    def detect(
        self, tensor: np.ndarray, k: int = 5, extra: dict[str, np.ndarray] | None = None
    ) -> list[Detection]:
        """The ``k`` highest-scoring elements of a detector's score output (``--target
        output:NAME:input``), each with its map and box: one prediction call, then one batched
        call for all k when the model's batch holds them (a dynamic batch always does)."""
        scores = self.element_scores(tensor, extra)
        return self.explain_elements(tensor, top_elements(scores, k), extra)

    def element_scores(
        self, tensor: np.ndarray, extra: dict[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """The detector's score output for the first item of ``tensor``, flat: a prediction-only
        call (pruned graph where the backend prunes) at the model's batch size."""
        if self.element_output is None:
            raise ModelError(
                f"{self.path}: target '{self.contract.target}' does not choose an element at run "
                "time; export the detector with --target output:NAME:input"
            )
        size = batch_of(self.backend.inputs[self.contract.input][0], 1)
        scored = self.backend.subset([self.element_output])
        feeds = self._batch_feeds(tensor[:1], [0] * size, extra)
        return np.asarray(scored.run([self.element_output], feeds)[0][0]).reshape(-1)

    def explain_elements(
        self, tensor: np.ndarray, indices: list[int], extra: dict[str, np.ndarray] | None = None
    ) -> list[Detection]:
        """Maps (and boxes) of the flat score elements ``indices`` of one input item, in batches
        of the model's batch size (all at once for a dynamic batch)."""
        item = tensor[:1]
        wanted = [self.element_output, self.output] + ([self.boxes.output] if self.boxes else [])
        size = batch_of(self.backend.inputs[self.contract.input][0], len(indices))
        grid = self.grid()
        found: list[Detection] = []
        for run in chunks(list(indices), size):
            values = self.backend.run(wanted, self._batch_feeds(item, run, extra))
            per_item = values[0][0].size
            for row, index in enumerate(run[: len(indices) - len(found)]):
                self._check_target(index, per_item)
                box = None
                if self.boxes is not None:
                    box = element_box(values[2][row], index, per_item, self.boxes, grid)
                score = float(values[0][row].reshape(-1)[index])
                saliency = _as_map(values[1][row : row + 1], self.output, self.path, self.image)
                found.append(Detection(index, score, saliency, box))
        return found

    def _batch_feeds(self, item: np.ndarray, targets: list[int], extra) -> dict[str, np.ndarray]:
        batch = np.repeat(item, len(targets), axis=0)
        feeds = {
            self.contract.input: batch,
            self.contract.target_input: np.array(targets, np.int64),
        }
        return {**feeds, **self._other_inputs(len(targets), extra or {}, set(feeds))}

    def grid(self) -> tuple[int, int]:
        """(H, W) of the image input's grid: the coordinates boxes are given in."""
        shape = self.backend.inputs[self.contract.input][0]
        spatial = shape[2:4] if self.contract.preprocess.layout == "NCHW" else shape[1:3]
        known = all(isinstance(d, int) and d > 0 for d in spatial) and len(spatial) == 2
        return (int(spatial[0]), int(spatial[1])) if known else tuple(self.contract.preprocess.size)

    def _check_target(self, target: int, classes: int) -> None:
        """The graph's one-hot seed maps an index outside 0..classes-1 to an all-zero (or, for a
        negative index, another class's) map without complaint, so the index is checked here."""
        if 0 <= target < classes:
            return
        if self.element_output is not None:
            raise ModelError(
                f"{self.path}: detector index {target} is out of range: output "
                f"'{self.element_output}' has {classes} elements per item (valid: 0..{classes - 1})"
            )
        raise ModelError(
            f"{self.path}: target class {target} is out of range: the model scores "
            f"{classes} classes (valid: 0..{classes - 1})"
        )

    def _fixed_target(self, probs: np.ndarray) -> int:
        spec = self.contract.target
        if spec.startswith("class:") and spec[6:].isdigit():
            return int(spec[6:])
        return int(np.argmax(probs))

    def check_input_size(self) -> None:
        """The input fits the memory budget; an image's preprocessing grid matches its shape."""
        shape, _ = self.backend.inputs[self.contract.input]
        pre = self.contract.preprocess
        check_input_budget(self.path, self.contract.input, shape, pre)
        if self.image:  # audio, series, tabular: fed as arrays, no frame grid
            self.contract.check_input_size(self.path)


def model_paths(specs: list[str]) -> list[Path]:
    """Model files from ``--model``/``--fallback`` values: paths, comma lists, or folders (all
    ``.onnx``/``.tflite`` files inside, sorted by name)."""
    paths: list[Path] = []
    for spec in specs:
        for part in filter(None, (s.strip() for s in spec.split(","))):
            path = Path(part)
            if path.is_dir():
                found = sorted(p for p in path.iterdir() if p.suffix.lower() in MODEL_SUFFIXES)
                if not found:
                    raise ModelError(f"model folder {path} holds no .onnx or .tflite file")
                paths.extend(found)
            else:
                paths.append(path)
    if not paths:
        raise ModelError("no model given")
    return paths


class MethodChain:
    """Variants in order of preference; ``index`` 0 is the first model's first method."""

    def __init__(self, variants: list[Variant]):
        if not variants:
            raise ModelError("no saliency method available")
        self.variants = variants

    @classmethod
    def load(
        cls,
        specs: list[str],
        options: BackendOptions | None = None,
        methods: list[str] | None = None,
        overrides: dict | None = None,
    ) -> MethodChain:
        """Load every model; keep the ``methods`` named (in that order) when given."""
        variants: list[Variant] = []
        for path in model_paths(specs):
            backend = load_backend(path, options)
            contract = build_contract(str(path), backend.metadata, backend.inputs, backend.outputs)
            if overrides:
                contract = contract.with_overrides(**overrides)
            for method in contract.saliency:
                variant = Variant(backend, contract, method)
                variant.check_input_size()
                variants.append(variant)
        if methods:
            by_name = {v.method: v for v in reversed(variants)}
            missing = [m for m in methods if m not in by_name]
            if missing:
                raise ModelError(
                    f"--methods {','.join(methods)}: {missing} not among the loaded models' "
                    f"methods {[v.method for v in variants]}"
                )
            variants = [by_name[m] for m in methods]
        return cls(variants)

    def __len__(self) -> int:
        return len(self.variants)

    def __getitem__(self, index: int) -> Variant:
        return self.variants[min(index, len(self.variants) - 1)]

    def describe(self) -> list[dict]:
        return [
            {"method": v.method, "model": v.path, "backend": v.backend.name} for v in self.variants
        ]
