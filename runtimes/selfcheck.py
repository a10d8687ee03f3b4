"""Counterfactual self-check: does removing what the map calls important change the decision?

For a checked frame: fill the top ``fraction`` most salient pixels of the model's crop with the
mean colour of the other pixels (a fill that carries no evidence of its own), re-run the forward
pass, and measure the relative drop of the explained class's probability,
``drop = (p - p_masked) / p``. The same is done with a random mask of equal size as a control. A
map is flagged unfaithful for that frame when ``drop < min_drop`` or when it does not beat the
random mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from edgesal.runtimes.model import Variant
from edgesal.runtimes.overlay import top_fraction_mask


@dataclass(frozen=True)
class CheckConfig:
    every: int = 0  # check every N-th map; 0 disables
    fraction: float = 0.1
    min_drop: float = 0.1


@dataclass(frozen=True)
class CheckResult:
    drop: float
    random_drop: float
    faithful: bool
    fraction: float

    def as_dict(self) -> dict:
        return asdict(self)


def masked(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``crop`` (HWC) with the pixels under ``mask`` set to the mean colour of the rest."""
    out = crop.copy()
    keep = ~mask
    fill = crop[keep].mean(axis=0) if keep.any() else crop.reshape(-1, crop.shape[-1]).mean(axis=0)
    out[mask] = fill.astype(crop.dtype)
    return out


def counterfactual(
    variant: Variant,
    crop: np.ndarray,
    saliency: np.ndarray,
    target: int,
    prob: float,
    config: CheckConfig,
    rng: np.random.Generator,
) -> CheckResult:
    """Score drops for the top-``fraction`` mask and a random mask of the same size. A map on a
    coarser grid than the crop (a vision transformer's patch grid) masks whole cells."""
    height, width = crop.shape[:2]
    if saliency.shape != (height, width):
        saliency = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_NEAREST)
    top = top_fraction_mask(saliency, config.fraction)
    control = np.zeros(saliency.size, bool)
    control[rng.choice(saliency.size, int(top.sum()), replace=False)] = True
    drops = []
    for mask in (top, control.reshape(saliency.shape)):
        tensor = variant.preprocessor.tensor(masked(crop, mask))
        after = variant.run(tensor, target, want_map=False).probs[target]
        drops.append(float((prob - after) / max(prob, 1e-12)))
    faithful = drops[0] >= config.min_drop and drops[0] > drops[1]
    return CheckResult(drops[0], drops[1], faithful, config.fraction)
