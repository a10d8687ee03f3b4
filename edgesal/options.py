"""Names and parameters of methods and post-processing, importable without onnx.

The CLI builds its parser from these so that device-only installs (numpy, opencv and one inference
backend) can still run ``edgesal run`` and ``edgesal records``.
"""

from __future__ import annotations

from dataclasses import dataclass

METHOD_NAMES = (
    "vanilla", "gradxinput", "guided", "integrated", "smoothgrad", "gradcam", "gradcampp",
)  # fmt: skip
REDUCTIONS = ("absmax", "abssum", "l2", "none")
NORMALIZATIONS = ("max", "percentile", "none")
INTEGRATIONS = ("gausslegendre", "trapezoid")


@dataclass
class MethodOptions:
    """Method parameters; the CLI flags map one to one onto these fields."""

    steps: int = 16
    integration: str = "gausslegendre"  # or "trapezoid" (textbook: weights sum to 1)
    baseline: str = "zeros"  # zeros | blur | a number | an image path
    samples: int = 8  # noisy samples of the smoothgrad method
    smooth: int = 0  # SmoothGrad samples wrapped around any other method (0: off)
    sigma: float = 0.15  # SmoothGrad noise, as a fraction of each image's value range
    squared: bool = False  # SmoothGrad-squared: average the squared maps
    seed: int = 0  # noise seed (the noise is stored in the graph)
    layer: str | None = None  # Grad-CAM layer: tensor or node name (default: auto)
    max_batch: int = 0  # samples per batched pass, chunks run one after another (0: all at once)
