"""What every saliency method shares: the context it builds in, sample copies, the registry."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import onnx

from edgesal.autodiff.engine import input_gradient
from edgesal.errors import InputError
from edgesal.graph.batched import (
    batched_info,
    chunk_sizes,
    copied_nodes,
    join_items,
    take_items,
)
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo
from edgesal.graph.rebatch import Copy, NotRebatchable, check_rebatched, rebatch
from edgesal.image_input import ImageInput
from edgesal.options import MethodOptions

if TYPE_CHECKING:
    from edgesal.roi.plan import RoiPlan


CONV_NET_MAX_BATCH = 2
TRANSFORMER_MAX_BATCH = 8


def default_max_batch(model: onnx.ModelProto, info: TensorInfo) -> int:
    """Samples per batched pass when ``--max-batch`` is not given: 8 for a transformer (a Softmax
    over the last axis of a square [N, H, T, T] tensor), else 2. Measured (docs/tokens.md,
    docs/batching.md; MiniLM T = 128, 16 IG points, wall time, quiet machine): chunks of 8 cost
    0.95-0.97 x 16 vanilla calls, one batch 0.98, chunks of 2 1.13; on conv nets chunks of 2
    were fastest and bound the peak memory (476 MB vs 1002 MB on EfficientNet-Lite0)."""
    for node in model.graph.node:
        dims = info.dims(node.output[0]) if node.op_type == "Softmax" else None
        if dims and len(dims) == 4 and isinstance(dims[3], int) and dims[2] == dims[3] > 1:
            return TRANSFORMER_MAX_BATCH
    return CONV_NET_MAX_BATCH


@dataclass
class MethodContext:
    """The model being exported, its image input and the seeds of the chosen target."""

    model: onnx.ModelProto
    info: TensorInfo
    b: Builder
    image: ImageInput
    seeds: dict[str, str]
    options: MethodOptions = field(default_factory=MethodOptions)
    metadata: dict = field(default_factory=dict)
    roi: RoiPlan | None = None  # region of interest: gradients on a window (edgesal/roi/)
    batching: dict = field(default_factory=dict)  # how samples ran: the edgesal.batching entry
    _cache: dict = field(default_factory=dict)

    def shape(self, name: str) -> tuple[int, ...]:
        """Static shape of ``name``, re-inferring once if a method just created it."""
        return self._known(name).shape(name)

    def dtype(self, name: str):
        """numpy dtype of ``name``."""
        return self._known(name).np_dtype(name)

    def _known(self, name: str) -> TensorInfo:
        if not self.info.has(name):
            self.info = TensorInfo(self.model)
        return self.info

    def gradient(self, at: str | None = None, copies: int = 1, mode: str = "vanilla") -> str:
        """dS/d(at) for samples ``at`` ([N * copies, ...]; default: the image tensor itself).

        The samples run as one batch or in chunks (``--max-batch``, or one at a time where the
        graph cannot be rebatched), joined back in order. With a region of interest split at a
        tensor, only the window's values are computed (the early layers on a crop), zero elsewhere.
        """
        at = at or self.image.tensor
        key = ("input", at, copies, mode)
        if key not in self._cache:
            parts = [self._chunk_gradient(chunk, mode) for chunk in self._chunks(at, copies)]
            self._cache[key] = self._joined(parts, at, copies)
        return self._cache[key]

    def gradient_recording(self, tensors: list[str], flag: str) -> dict[str, str]:
        """dS/d(each of ``tensors``) from the backward pass of dS/d(image), which lands in the
        cache :meth:`gradient` reads, so the maps reuse the pass: attention probabilities, a patch
        embedding. A tensor the target does not depend on is an error naming ``flag``."""
        if self.roi is not None:
            raise InputError(f"--roi: not with {flag}")
        record: dict[str, str | None] = dict.fromkeys(tensors)
        grad = input_gradient(
            self.model.graph, self.info, self.b, self.seeds, self.image.tensor, record=record
        )
        self._cache[("input", self.image.tensor, 1, "vanilla")] = grad
        found = {tensor: g for tensor, g in record.items() if g is not None}
        missing = [tensor for tensor in tensors if tensor not in found]
        if missing:
            raise InputError(f"{flag}: the target does not depend on '{missing[0]}'")
        return found

    def _chunk_gradient(self, chunk: Chunk, mode: str) -> str:
        if self.roi is not None and self.roi.split is not None:
            return self.roi.gradient(self, chunk.at, chunk.mapping, chunk.seeds, chunk.k, mode)
        wrt = chunk.mapping.get(self.image.tensor, chunk.at)
        return input_gradient(self.model.graph, self.info, self.b, chunk.seeds, wrt, mode)

    def layer_gradient(self, layer: str, at: str | None = None, copies: int = 1) -> tuple[str, str]:
        """(activation, dS/d activation) of tensor ``layer`` for the samples ``at``."""
        at = at or self.image.tensor
        key = ("layer", layer, at, copies)
        if key not in self._cache:
            activations: list[str] = []
            grads: list[str] = []
            for chunk in self._chunks(at, copies):
                activation = chunk.mapping.get(layer, layer)
                graph, info = self.model.graph, self.info
                grads.append(input_gradient(graph, info, self.b, chunk.seeds, activation))
                activations.append(activation)
            self._cache[key] = (
                self._joined(activations, at, copies),
                self._joined(grads, at, copies),
            )
        return self._cache[key]

    def _joined(self, parts: list[str], at: str, copies: int) -> str:
        if len(parts) == 1:
            return parts[0]
        sizes = chunk_sizes(copies, self.batching["max_batch"])
        shape = self.shape(parts[0])
        n = shape[0] // sizes[0]
        return join_items(self.b, parts, sizes, (n * copies, *shape[1:]))

    def _chunks(self, at: str, copies: int):
        """The forward copies that run samples ``at``, made lazily, so each chunk's forward pass
        sits right before its backward pass in the node list (runtimes that follow the node
        order, as TFLite's planner does, free one chunk before the next). No data dependency
        joins the chunks: quantization tells gradient tensors by what is downstream of the
        seeds, and a later chunk's forward pass must not look like one."""
        if at == self.image.tensor and copies == 1:
            yield Chunk(at, 1, {}, self.seeds)
            return
        sizes = self._plan(at, copies)
        start = 0
        for k in sizes:
            yield self._chunk(at, copies, start, k)
            start += k

    def _plan(self, at: str, copies: int) -> list[int]:
        """Chunk sizes for ``copies`` samples: ``--max-batch`` chunks if the graph can be
        rebatched (tried on the first chunk, checked by shape inference and numerically), else
        one sample at a time in the unchanged graph (slower, never wrong)."""
        if not self.batching:
            limit = self.options.max_batch
            if limit is None:
                limit = default_max_batch(self.model, self.info)
            self.batching.update(mode="batch", max_batch=limit, rewrites=[])
        sizes = chunk_sizes(copies, self.batching["max_batch"])
        if sizes[0] == 1:
            return sizes
        mark = len(self.model.graph.node)
        try:
            self._chunk(at, copies, 0, sizes[0])
        except NotRebatchable as exc:
            del self.model.graph.node[mark:]
            self._cache = {k: v for k, v in self._cache.items() if k[0] != "chunk"}
            self.info = TensorInfo(self.model)
            self.batching.update(mode="sequential", max_batch=1, reason=str(exc), rewrites=[])
            return chunk_sizes(copies, 1)
        return sizes

    def _chunk(self, at: str, copies: int, start: int, k: int) -> Chunk:
        """Forward copy of samples ``start .. start + k`` of ``at`` (cached)."""
        key = ("chunk", at, copies, start, k)
        if key in self._cache:
            return self._cache[key]
        b, image = self.b, self.image.tensor
        shape = self.shape(at)
        n = shape[0] // copies
        x = take_items(b, at, shape, copies, start, k)
        copy = copied_nodes(self.model.graph, image, x, set(self.seeds), b.unique(f"samples{k}"))
        rewrites = rebatch(copy, self.info, b, n, k) if k > 1 else []
        self.model.graph.node.extend(copy.copies)
        first = self._cache.get(("checked", k))
        if k == 1:
            self.info.alias(copy.mapping)
        elif first is not None:  # the same graph as a checked chunk: same shapes, no inference
            self.info.alias({first[name]: copy.mapping[name] for name in copy.mapping})
            if not all(self.info.has(t) for node in copy.copies for t in node.input if t):
                self.info = TensorInfo(self.model)
        else:
            self._checked(copy, x, n, k, rewrites)
            self._cache[("checked", k)] = copy.mapping
        seeds = {
            copy.mapping[name]: repeat_items(b, seed, self.shape(seed), k)
            for name, seed in self.seeds.items()
        }
        self._cache[key] = Chunk(x, k, copy.mapping, seeds)
        return self._cache[key]

    def _checked(self, copy: Copy, x: str, n: int, k: int, rewrites: list[str]) -> None:
        """Shape inference must give every score batch n * k, and the copy run on n * k
        different samples must equal the original on each (a free batch axis can still mix
        samples, e.g. a Softmax over axis 0)."""
        what = f"a method with {k} samples per item"
        self.info = batched_info(self.model, what)
        for name in self.seeds:
            got = self.info.shape(copy.mapping[name])[0]
            if got != n * k:
                raise NotRebatchable(
                    f"{what} runs its samples as one batch, but the model does not accept "
                    f"another batch size: '{name}' gets batch {got} instead of {n * k} "
                    "(a Reshape or similar fixes the batch)"
                )
        if "checked" not in self.batching:  # once per export: every chunk is the same graph
            outputs = {name: copy.mapping[name] for name in self.seeds}
            error = check_rebatched(self.model, self.image.tensor, x, outputs, n, k)
            self.batching["checked"] = float(f"{error:.2g}")
            if rewrites:
                self.batching.update(mode="rebatched", rewrites=rewrites)


@dataclass
class Chunk:
    """Samples ``at`` ([N * k, ...]) through their forward copy (``mapping``), with ``seeds``."""

    at: str
    k: int
    mapping: dict[str, str]
    seeds: dict[str, str]


def repeat_items(b: Builder, tensor: str, shape: tuple[int, ...], copies: int) -> str:
    """[N, ...] -> [N * copies, ...], each item repeated ``copies`` times in a row."""
    if copies == 1:
        return tensor
    n, rest = shape[0], list(shape[1:])
    grouped = b.Reshape(tensor, b.ints([n, 1, *rest]))
    expanded = b.Expand(grouped, b.ints([n, copies, *rest]))
    return b.Reshape(expanded, b.ints([n * copies, *rest]))


def split_items(b: Builder, tensor: str, shape: tuple[int, ...], copies: int) -> str:
    """[N * copies, ...] -> [N, copies, ...]."""
    return b.Reshape(tensor, b.ints([shape[0] // copies, copies, *shape[1:]]))


def per_item_size(shape: tuple[int, ...]) -> int:
    return math.prod(shape[1:])


@dataclass(frozen=True)
class Method:
    name: str
    build: Callable[[MethodContext, str, int], str]
    summary: str


METHODS: dict[str, Method] = {}


def method(name: str, summary: str) -> Callable:
    """Decorator: register ``build`` as saliency method ``name``."""

    def wrap(build: Callable[[MethodContext, str, int], str]) -> Callable:
        METHODS[name] = Method(name, build, summary)
        return build

    return wrap
