"""What every inference backend shares: the options it opens with and the interface it offers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


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
