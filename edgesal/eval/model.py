"""The saliency model under evaluation, read through its edgesal metadata and run on onnxruntime.

:class:`ModelSpec` is what the metadata says (image input, layout, preprocessing, score and
saliency outputs, target), built by :func:`contract` from the metadata and the file's signature, so
an ONNX model and a TFLite one (:mod:`edgesal.eval.tflite`) follow the same rules.
:class:`SaliencyRunner` turns an image into the model's input and its outputs into an
:class:`Explained`; :class:`Runner` is the onnxruntime one and holds the two sessions a worker
needs: the saliency model itself (plus the Sobel control output) and a forward-only copy with a
free batch axis, which scores whole batches of perturbed images in one call.
:func:`edgesal.eval.tasks.open_runner` opens either format from its bytes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
import onnxruntime as ort

from edgesal.errors import InputError, ModelLoadError
from edgesal.eval.controls import SOBEL_OUTPUT, add_sobel_output
from edgesal.eval.graphs import prune, with_free_batch
from edgesal.export.targets import TARGET_INPUT, Target
from edgesal.graph.info import TensorInfo
from edgesal.image_input import graph_inputs
from edgesal.imaging import softmax
from edgesal.runtimes.contract import Preprocess, build_contract, crop_tensor
from edgesal.runtimes.errors import ModelError


@dataclass(frozen=True)
class ModelSpec:
    """How to feed a saliency model and read its answer."""

    where: str
    input: str
    layout: str
    shape: tuple[int, ...]
    dtype: str
    preprocess: Preprocess
    scores: str
    saliency: dict[str, str]  # method -> output name
    target: str
    target_input: bool
    # the scores already are a distribution (ONNX: a Softmax/Sigmoid output); None: the file does
    # not say (TFLite), the runner decides per row as the device runtime does
    probabilities: bool | None
    labels: list[str] = field(default_factory=list)
    classes: int = 0  # width of the score output; 0 when its shape is not static
    format: str = "onnx"

    @property
    def size(self) -> tuple[int, int]:
        return (self.shape[2], self.shape[3]) if self.layout == "NCHW" else self.shape[1:3]

    @property
    def batch(self) -> int:
        return self.shape[0]

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class {index}"


Dims = tuple[int | str | None, ...] | None  # a tensor's shape, None (or None dims) where unknown


def inspect(model: onnx.ModelProto, where: str = "model") -> ModelSpec:
    """Read the contract of an exported saliency model; a model that is not one is an error."""
    info = TensorInfo(model)
    inputs = {
        v.name: (info.dims(v.name), np.dtype(info.np_dtype(v.name)).name)
        for v in graph_inputs(model)
    }
    outputs = {o.name: info.dims(o.name) for o in model.graph.output}
    props = {p.key: p.value for p in model.metadata_props}
    spec = contract(props, inputs, outputs, where)
    return replace(spec, probabilities=_is_distribution(model, spec.scores))


def contract(
    props: dict[str, str], inputs: dict[str, tuple[Dims, str]], outputs: dict[str, Dims], where: str
) -> ModelSpec:
    """The spec from the ``edgesal.*`` metadata ``props`` and the file's signature: ``inputs``
    name -> (dims, numpy dtype name), ``outputs`` name -> dims, in file order. The contract is
    the device runtime's (:func:`edgesal.runtimes.contract.build_contract`); evaluation adds a
    static input shape and a class target. ``probabilities`` is left None: only the graph can
    tell."""
    try:
        device = build_contract(where, props, inputs, list(outputs))
        device.check_input_size(where)
    except ModelError as exc:
        raise ModelLoadError(str(exc)) from None
    if Target.parse(device.target).kind == "output":
        raise InputError(
            f"{where}: target '{device.target}' explains a tensor, not a class; deletion, "
            "insertion and ROAD need class probabilities (export with --target argmax, class:K "
            "or input)"
        )
    dims = device.shape
    if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
        raise InputError(f"{where}: image input '{device.input}' has no static shape ({dims})")
    return ModelSpec(
        where=where,
        input=device.input,
        layout=device.layout,
        shape=tuple(int(d) for d in dims),
        dtype=device.dtype,
        preprocess=device.preprocess,
        scores=device.scores,
        saliency=device.saliency,
        target=device.target,
        target_input=device.target_input is not None,
        probabilities=None,
        labels=list(device.labels),
        classes=_width(outputs[device.scores]),
    )


def _width(dims: Dims) -> int:
    """Values per item of a [batch, ...] output; 0 when a dim is not static."""
    rest = list(dims or ())[1:]
    return int(np.prod(rest)) if dims and all(isinstance(d, int) for d in rest) else 0


def _is_distribution(model: onnx.ModelProto, scores: str) -> bool:
    producer = next((n for n in model.graph.node if scores in n.output), None)
    return producer is not None and producer.op_type in ("Softmax", "Sigmoid")


def session(model: onnx.ModelProto | bytes, threads: int) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads, sequential execution (deterministic)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


@dataclass
class Explained:
    """One image's answer: class probabilities, the class explained, and every map [H, W]."""

    probs: np.ndarray
    target: int
    maps: dict[str, np.ndarray]
    sobel: np.ndarray | None = None  # the Sobel control map, where the runner computes it


class SaliencyRunner:
    """What every runtime shares: the model's layout and dtype, probabilities, ``explain``.

    A subclass runs the saliency model, ``_run(feeds) -> (scores, maps in spec.saliency order,
    sobel or None)``, and scores batches, ``predict(pixels) -> [B, classes]``.
    """

    spec: ModelSpec

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, list, np.ndarray | None]:
        raise NotImplementedError

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities [B, classes] of a batch of images [B, H, W, C]."""
        raise NotImplementedError

    def to_model(self, pixels: np.ndarray) -> np.ndarray:
        """[B, H, W, C] values in the input's units -> the model's layout and dtype."""
        x = pixels.transpose(0, 3, 1, 2) if self.spec.layout == "NCHW" else pixels
        if self.spec.dtype == "uint8":
            return np.ascontiguousarray(np.clip(np.rint(x), 0, 255).astype(np.uint8))
        return np.ascontiguousarray(x, dtype=self.spec.dtype)

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, np.float64).reshape(scores.shape[0], -1)
        return scores if self.spec.probabilities else softmax(scores)

    def explain(self, pixels: np.ndarray, target: int | None = None) -> Explained:
        """Run the saliency model on one image [H, W, C]; ``target`` None: the model's own rule
        (argmax or class:K; a model with a target input explains its top class)."""
        x = self._fill(self.to_model(pixels[None]), self.spec.batch)
        feeds = {self.spec.input: x}
        if self.spec.target_input:
            if target is None:
                target = int(np.argmax(self.predict(pixels[None])[0]))
            feeds[TARGET_INPUT] = np.full(self.spec.batch, target, np.int64)
        scores, maps, sobel = self._run(feeds)
        probs = self.probabilities(scores)[0]
        if target is None:
            parsed = Target.parse(self.spec.target)
            target = parsed.index if parsed.kind == "class" else int(np.argmax(probs))
        named = {
            m: np.asarray(v[0], np.float32) for m, v in zip(self.spec.saliency, maps, strict=True)
        }
        control = None if sobel is None else np.asarray(sobel[0], np.float32)
        return Explained(probs, int(target), named, control)

    @staticmethod
    def _fill(x: np.ndarray, batch: int) -> np.ndarray:
        """Repeat the last item until ``x`` has the model's fixed batch size."""
        if len(x) == batch:
            return x
        return np.concatenate([x, np.repeat(x[-1:], batch - len(x), axis=0)])


class Runner(SaliencyRunner):
    """The sessions of one worker: the saliency model (+ Sobel control) and a batch forward."""

    def __init__(self, model: onnx.ModelProto, spec: ModelSpec, threads: int = 1, batch: int = 32):
        self.spec, self.batch, self.threads = spec, batch, threads
        self.model = model
        with_control = add_sobel_output(copy.deepcopy(model), spec.input, spec.layout)
        self.saliency = session(with_control, threads)
        self.outputs = [spec.scores, *spec.saliency.values(), SOBEL_OUTPUT]
        self._forward: ort.InferenceSession | None = None
        self.free_batch = False

    @property
    def forward(self) -> ort.InferenceSession:
        """The prediction-only session, made on first use: batch axis freed when the graph
        accepts another batch size, else the model's own batch."""
        if self._forward is None:
            pruned = prune(self.model, [self.spec.scores])
            free = with_free_batch(copy.deepcopy(pruned), self.spec.input)
            self._forward, self.free_batch = session(free, self.threads), True
            try:
                zeros = self.to_model(self._zeros(2))
                self._forward.run([self.spec.scores], {self.spec.input: zeros})
            except Exception:  # onnxruntime raises several types for shape errors
                self._forward, self.free_batch = session(pruned, self.threads), False
        return self._forward

    def _zeros(self, n: int) -> np.ndarray:
        h, w = self.spec.size
        channels = self.spec.shape[1] if self.spec.layout == "NCHW" else self.spec.shape[3]
        return np.zeros((n, h, w, channels), np.float32)

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, list, np.ndarray | None]:
        scores, *maps, sobel = self.saliency.run(self.outputs, feeds)
        return scores, maps, sobel

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities [B, classes] of a batch of images [B, H, W, C]."""
        forward = self.forward
        step = self.batch if self.free_batch else self.spec.batch
        chunks = []
        for start in range(0, len(pixels), step):
            part = self.to_model(pixels[start : start + step])
            x = part if self.free_batch else self._fill(part, self.spec.batch)
            (scores,) = forward.run([self.spec.scores], {self.spec.input: x})
            chunks.append(self.probabilities(scores)[: len(part)])
        return np.concatenate(chunks)


def pixels_of(crop: np.ndarray, pre: Preprocess) -> np.ndarray:
    """The model input of an RGB crop as [H, W, C] in the input's units, not laid out: the
    device's tensor (:func:`~edgesal.runtimes.contract.crop_tensor`) as float32 HWC."""
    x = crop_tensor(crop, pre)[0].astype(np.float32)
    return x.transpose(1, 2, 0) if pre.layout.upper() == "NCHW" else x
