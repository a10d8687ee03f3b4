"""The settings of an audit; the CLI flags map one to one onto these fields.

Importable without onnx, onnxruntime or OpenCV, so the CLI parser builds on device-only installs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgesal.errors import InputError

BASELINES = ("zeros", "blur", "mean")  # what deleted pixels become / the insertion canvas
CONTROLS = ("random", "sobel")  # control maps scored like methods
MODES = ("cascading", "independent")  # model-parameter randomization modes


@dataclass(frozen=True)
class EvalOptions:
    """What ``edgesal eval`` measures, and how much work each measurement costs."""

    steps: int = 20  # deletion / insertion steps
    deletion_baseline: str = "zeros"  # what removed pixels become (RISE: zeros)
    insertion_canvas: str = "blur"  # where inserted pixels go (RISE: blur)
    batch: int = 32  # forward-pass batch for perturbed images
    tolerance: float = 15.0  # pointing game, pixels on the model's input grid
    road_fractions: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)  # empty: no ROAD
    road_noise: float = 0.01
    sensitivity_samples: int = 8  # 0: no max-sensitivity
    sensitivity_radius: float = 0.02  # fraction of the image's value range
    controls: tuple[str, ...] = CONTROLS
    sanity_images: int = 2  # 0: no sanity checks
    sanity_steps: str = "log"
    sanity_modes: tuple[str, ...] = MODES
    sanity_threshold: float = 0.5
    random_logit: bool = True
    seed: int = 0
    threads: int = 1  # onnxruntime intra-op threads per worker
    overlays: int = 12  # per-image overlay PNGs in the report

    def validate(self) -> None:
        """Reject bad values up front, naming the flag."""
        checks = [
            (self.steps >= 1, f"--steps {self.steps}: must be >= 1"),
            (self.batch >= 1, f"--batch {self.batch}: must be >= 1"),
            (self.tolerance >= 0, f"--tolerance {self.tolerance}: must be >= 0"),
            (self.deletion_baseline in BASELINES, f"--deletion-baseline: one of {BASELINES}"),
            (self.insertion_canvas in BASELINES, f"--insertion-canvas: one of {BASELINES}"),
            (all(0 < f < 1 for f in self.road_fractions), "--road-fractions: each in (0, 1)"),
            (self.road_noise >= 0, f"--road-noise {self.road_noise}: must be >= 0"),
            (self.sensitivity_samples >= 0, "--sensitivity-samples: must be >= 0"),
            (self.sensitivity_radius > 0, "--sensitivity-radius: must be > 0"),
            (set(self.controls) <= set(CONTROLS), f"--controls: choose from {CONTROLS}"),
            (self.sanity_images >= 0, "--sanity-images: must be >= 0"),
            (set(self.sanity_modes) <= set(MODES), f"--sanity-modes: choose from {MODES}"),
            (0 < self.sanity_threshold <= 1, "--sanity-threshold: must be in (0, 1]"),
            (self.threads >= 1, f"--threads {self.threads}: must be >= 1"),
            (self.overlays >= 0, f"--overlays {self.overlays}: must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def to_json(self) -> dict:
        return asdict(self)
