"""What every inference backend shares: the options it opens with and the interface it offers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgesal.runtimes.errors import ModelError

MAX_INPUT_BYTES = 256 << 20  # one frame's input tensor, checked before anything allocates it


def check_input_bytes(
    path: str, name: str, dims: list[int], itemsize: int, limit: int = MAX_INPUT_BYTES
) -> None:
    """prod(dims) * itemsize must stay within ``limit``: a model declaring a 100000 x 100000
    input is refused by name instead of failing in a 30 GB allocation."""
    needed = math.prod(dims) * itemsize
    if needed > limit:
        raise ModelError(
            f"{path}: input '{name}' {dims} needs {needed / 2**30:.1f} GiB per frame, more than "
            f"the {limit >> 20} MiB input budget; export the model at a smaller input size "
            "(or pass a smaller --input-size to a model with a dynamic input)"
        )


@dataclass(frozen=True)
class BackendOptions:
    """``threads``: intra-op threads; ``device``: ``auto``, ``cpu``, ``cuda`` or ``tensorrt``
    (onnxruntime only); ``trt_cache``: folder for TensorRT engines (built once, then reused)."""

    threads: int = 2
    device: str = "auto"
    trt_cache: str | None = None


class Backend(Protocol):
    """A loaded model: named inputs and outputs, ``edgesal.*`` metadata, one ``run`` call."""

    name: str
    path: str
    inputs: dict[str, tuple[tuple, str]]  # name -> (shape, numpy dtype name)
    outputs: list[str]
    metadata: dict[str, str]

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def subset(self, outputs: list[str]) -> Backend:
        """A backend computing only ``outputs`` (a pruned graph when the format allows)."""
        ...
