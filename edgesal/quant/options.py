"""What ``edgesal quantize`` does, importable without onnx, onnxruntime or OpenCV.

The CLI builds its parser from these dataclasses (defaults and all), so device-only installs can
still list the command and no table of defaults has to be kept in step with them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edgesal.errors import InputError

GRADIENT_METHODS = ("auto", "percentile", "entropy", "minmax")  # how gradient ranges are fit


@dataclass(frozen=True)
class Budget:
    """The map error a quantized model may have: floors on mean Spearman and top-10% IoU."""

    spearman: float = 0.9
    iou: float = 0.7

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``0.1`` (1 - Spearman allowed; IoU floor stays 0.7) or ``spearman=0.9,iou=0.7``."""
        try:
            if "=" not in text:
                error = float(text)
                if not 0.0 <= error <= 1.0:
                    raise ValueError
                return cls(spearman=1.0 - error)
            fields = dict(part.split("=", 1) for part in text.split(","))
            unknown = set(fields) - {"spearman", "iou"}
            if unknown:
                raise ValueError
            return cls(**{k: float(v) for k, v in fields.items()})
        except (ValueError, TypeError):
            raise InputError(
                f"--max-map-error {text!r}: give 1 - Spearman as a number in [0, 1] (e.g. 0.1) "
                "or floors as spearman=0.9,iou=0.7"
            ) from None

    def met(self, spearman: float, iou: float, margin: float = 0.0) -> bool:
        return spearman >= self.spearman + margin and iou >= self.iou + margin


@dataclass(frozen=True)
class SearchOptions:
    """How hard the search works: blocks per region, evaluation cap, safety margin."""

    blocks: int = 8
    max_evaluations: int = 40
    margin: float = 0.04  # calibration images are few and unlike the photos: ask for more


@dataclass
class QuantOptions:
    """What ``edgesal quantize`` does; the CLI flags map one to one onto these fields."""

    calib: str = "builtin"  # folder, video file or "builtin"
    budget: Budget = field(default_factory=Budget)
    validation: float = 0.3  # fraction held out (folder/video); builtin has a fixed split
    augment: int = 3  # flipped/cropped copies per calibration image
    max_frames: int = 48  # frames taken from a video
    max_calibration: int = 32  # calibration samples used for ranges (after augmentation)
    tune: int = 6  # calibration images the float-node search is measured on
    gradient_range: str = "auto"  # one of GRADIENT_METHODS
    seed_rescale: bool = True
    search: SearchOptions = field(default_factory=SearchOptions)
    threads: int = 2
    latency_runs: int = 10  # profiled runs for the latency of kept nodes (0: skip)
    progress: Callable[[str], None] | None = None  # told what each stage is doing
