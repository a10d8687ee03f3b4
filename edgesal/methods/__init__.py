"""Saliency methods: small graph passes that turn the target's seed into an input attribution.

A method is ``build(ctx, x, copies) -> attribution``: ``x`` is the image tensor, or a batch of
``copies`` samples per image ([N * copies, ...], e.g. noisy copies for SmoothGrad); the result
has ``x``'s shape. Channel reduction and normalization happen afterwards, the same for every method.
Methods register by name; :data:`METHODS` is what the CLI and the tests enumerate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import onnx

from edgesal.autodiff.engine import input_gradient
from edgesal.errors import InputError
from edgesal.graph.batched import batched_info, forward_copy
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo
from edgesal.image_input import ImageInput
from edgesal.options import MethodOptions

if TYPE_CHECKING:
    from edgesal.roi.plan import RoiPlan


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

        With a region of interest split at a tensor, only the window's values are computed (the
        early layers on a crop) and the rest is zero.
        """
        at = at or self.image.tensor
        key = ("input", at, copies, mode)
        if key not in self._cache and self.roi is not None and self.roi.split is not None:
            mapping, seeds = self._forward_mapping(at, copies)
            self._cache[key] = self.roi.gradient(self, at, mapping, seeds, copies, mode)
        if key not in self._cache:
            graph_in, seeds = self._forward_for(at, copies)
            self._cache[key] = input_gradient(
                self.model.graph, self.info, self.b, seeds, graph_in, mode
            )
        return self._cache[key]

    def layer_gradient(self, layer: str, at: str | None = None, copies: int = 1) -> tuple[str, str]:
        """(activation, dS/d activation) of tensor ``layer`` for the samples ``at``."""
        at = at or self.image.tensor
        key = ("layer", layer, at, copies)
        if key not in self._cache:
            mapping, seeds = self._forward_mapping(at, copies)
            activation = mapping.get(layer, layer)
            grad = input_gradient(self.model.graph, self.info, self.b, seeds, activation)
            self._cache[key] = (activation, grad)
        return self._cache[key]

    def _forward_for(self, at: str, copies: int) -> tuple[str, dict[str, str]]:
        mapping, seeds = self._forward_mapping(at, copies)
        return mapping.get(self.image.tensor, at), seeds

    def _forward_mapping(self, at: str, copies: int) -> tuple[dict[str, str], dict[str, str]]:
        """The original graph when ``at`` is the image; else a batched copy fed by ``at``."""
        if at == self.image.tensor and copies == 1:
            return {}, self.seeds
        key = ("copy", at, copies)
        if key not in self._cache:
            prefix = self.b.unique(f"samples{copies}")
            mapping = forward_copy(self.model.graph, self.image.tensor, at, set(self.seeds), prefix)
            what = f"a method with {copies} samples per image"
            self.info = batched_info(self.model, what)
            for name in self.seeds:
                expected = self.info.shape(name)[0] * copies
                got = self.info.shape(mapping[name])[0]
                if got != expected:
                    raise InputError(
                        f"{what} runs its samples as one batch, but the model does not accept "
                        f"another batch size: '{name}' gets batch {got} instead of {expected} "
                        "(a Reshape or similar fixes the batch)"
                    )
            seeds = {
                mapping[name]: repeat_items(self.b, seed, self.info.shape(seed), copies)
                for name, seed in self.seeds.items()
            }
            self._cache[key] = (mapping, seeds)
        return self._cache[key]


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


from edgesal.methods import cam, gradients, integrated  # noqa: E402,F401  (registers methods)
