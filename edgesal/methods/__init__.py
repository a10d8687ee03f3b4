"""Saliency methods: small graph passes that turn the target's seed into an input attribution.

A method receives a :class:`MethodContext` and returns the name of a tensor shaped like the image
tensor (the raw attribution); channel reduction and normalization happen afterwards, the same for
every method. Methods register themselves by name; ``METHODS`` is what the CLI and tests enumerate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import onnx

from edgesal.autodiff.engine import input_gradient
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo
from edgesal.image_input import ImageInput


@dataclass
class MethodContext:
    """The model being exported, its image input and the seeds of the chosen target."""

    model: onnx.ModelProto
    info: TensorInfo
    b: Builder
    image: ImageInput
    seeds: dict[str, str]
    options: dict = field(default_factory=dict)

    def gradient(self, mode: str = "vanilla") -> str:
        """d(target)/d(image tensor), built by the autodiff engine (``mode``: vanilla | guided)."""
        return input_gradient(
            self.model.graph, self.info, self.b, self.seeds, self.image.tensor, mode, self.options
        )


@dataclass(frozen=True)
class Method:
    name: str
    build: Callable[[MethodContext], str]
    summary: str


METHODS: dict[str, Method] = {}


def method(name: str, summary: str) -> Callable:
    """Decorator: register ``build`` as saliency method ``name``."""

    def wrap(build: Callable[[MethodContext], str]) -> Callable[[MethodContext], str]:
        METHODS[name] = Method(name, build, summary)
        return build

    return wrap


from edgesal.methods import gradients  # noqa: E402,F401  (registers the methods)
