"""What ``edgesal export`` builds: methods, their parameters, post-processing, the explained input
and detector boxes, importable without onnx.

The CLI builds its parser from these (names and defaults alike) so that device-only installs
(numpy, opencv and one inference backend) can still run ``edgesal run`` and ``edgesal records``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgesal.errors import InputError
from edgesal.runtimes.contract import SALIENCY
from edgesal.runtimes.detections import BOX_FORMATS

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
    # samples per batched pass, chunks one after another (0: all; None: per model, measured:
    # 8 for transformers, 2 otherwise; edgesal.methods.base.default_max_batch)
    max_batch: int | None = None


@dataclass(frozen=True)
class InputSpec:
    """How the user described the explained input (the export flags, all optional)."""

    name: str | None = None  # --input
    layout: str | None = None  # --layout (images)
    modality: str | None = None  # --modality
    axes: str | None = None  # --axes, e.g. N,T,F
    channel_axis: int | None = None  # --channel-axis


@dataclass
class BoxOptions:
    """``--boxes-output``, ``--boxes-format``, ``--boxes-anchors`` (read) and ``--boxes-scale``;
    :func:`edgesal.export.boxes.box_metadata` checks them against a model."""

    output: str | None = None
    format: str = "xyxy"
    anchors: np.ndarray | None = None
    scale: float = 1.0

    def validate(self) -> None:
        if self.format not in BOX_FORMATS:
            raise InputError(f"--boxes-format {self.format}: choose {', '.join(BOX_FORMATS)}")
        if (self.format == "anchors") != (self.anchors is not None):
            raise InputError(
                "--boxes-anchors: needed with --boxes-format anchors, and only with it"
            )
        if not self.scale > 0:
            raise InputError(f"--boxes-scale {self.scale}: must be > 0")


@dataclass
class ExportOptions:
    """What ``edgesal export`` builds; the CLI flags map one to one onto these fields."""

    method: str = "vanilla"
    target: str = "argmax"
    reduce: str = "absmax"
    normalize: str = "max"
    input: str | None = None
    layout: str | None = None
    modality: str | None = None  # image | audio | series | tabular (default: guessed from rank)
    axes: str | None = None  # axis names of the input, e.g. "N,T,F" (default: guessed)
    channel_axis: int | None = None  # axis the map reduces over (non-image inputs)
    batch: int | None = None
    input_shape: tuple[int, ...] | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # other inputs: --shape
    output_name: str = SALIENCY
    methods: list[str] | None = None  # several maps sharing one forward: saliency_<method>
    params: MethodOptions = field(default_factory=MethodOptions)
    roi: tuple[int, int, int, int] | None = None  # fixed window x0,y0,x1,y1 (edgesal/roi/)
    roi_size: tuple[int, int] | None = None  # W,H of a window placed at run time (input 'roi')
    roi_split: str | None = None  # split tensor of the ROI crop (default: by estimated cost)
    preprocess: dict[str, object] = field(default_factory=dict)  # Preprocess fields to set
    labels: list[str] | None = None  # class names, one per score
    audio: dict | None = None  # edgesal.audio front-end fields (docs/audio.md)
    boxes_output: str | None = None  # detectors: the output holding each element's box
    boxes_format: str = "xyxy"  # its coordinates (runtimes.detections.BOX_FORMATS)
    boxes_anchors: np.ndarray | None = None  # format "anchors": [A, 4] cx, cy, w, h in [0, 1]
    boxes_scale: float = 1.0  # format "anchors": offsets are in units of 1/scale

    def box_options(self) -> BoxOptions:
        return BoxOptions(
            self.boxes_output, self.boxes_format, self.boxes_anchors, self.boxes_scale
        )

    def input_spec(self) -> InputSpec:
        return InputSpec(self.input, self.layout, self.modality, self.axes, self.channel_axis)

    def method_names(self) -> list[str]:
        return list(self.methods) if self.methods else [self.method]

    def validate(self) -> None:
        """Reject bad values up front, naming the flag."""
        for name in self.method_names():
            if name not in METHOD_NAMES:
                raise InputError(f"--method {name}: choose one of {', '.join(METHOD_NAMES)}")
        p = self.params
        if p.steps <= 0:
            raise InputError(f"--steps {p.steps}: must be >= 1")
        if p.samples <= 0:
            raise InputError(f"--samples {p.samples}: SmoothGrad needs at least 1 sample")
        if p.smooth < 0:
            raise InputError(f"--smooth {p.smooth}: the number of noisy samples must be >= 0")
        if p.sigma < 0:
            raise InputError(f"--sigma {p.sigma}: the noise level must be >= 0")
        self.box_options().validate()


@dataclass
class TokenOptions:
    """Flags of the token path (``edgesal export --input input_ids ...``)."""

    wrt: str | None = None  # differentiate this float tensor instead of the embedding lookup
    mask_input: str | None = None  # attention-mask input (default: attention_mask if present)
    attention: bool = False  # add attention, attention_rollout, attention_gradient outputs
    rollout_from: str = "cls"  # cls | mean
    baseline_token: int | None = None  # IG reference token id (default: zero embeddings)
    special_tokens: tuple[int, ...] = field(default_factory=tuple)  # kept in the IG reference
    patch_map: bool = False  # ViT: every [N, T] map also as <name>_grid [N, H/p, W/p]
