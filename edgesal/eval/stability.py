"""Max-sensitivity (Yeh et al. 2019): how much a map changes under small input noise.

SENS_max(x) = max_{||d||_inf <= r} ||Phi(x + d) - Phi(x)||_2 / ||Phi(x)||_2, estimated by Monte
Carlo over ``samples`` uniform perturbations d, with the radius r a fraction of the image's value
range. The denominator makes it independent of the map's scale (as in Quantus). Lower is better.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgesal.errors import InputError

Explain = Callable[[np.ndarray], dict[str, np.ndarray]]  # [H, W, C] -> {method: map}


def max_sensitivity(
    explain: Explain,
    pixels: np.ndarray,
    reference: dict[str, np.ndarray],
    radius: float,
    samples: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """SENS_max of each method's map; ``reference`` are the maps of the unperturbed image."""
    if radius <= 0 or samples < 1:
        raise InputError(f"max-sensitivity needs radius > 0 and samples >= 1 ({radius}, {samples})")
    r = radius * float(np.ptp(pixels))
    worst = dict.fromkeys(reference, 0.0)
    for _ in range(samples):
        noise = rng.uniform(-r, r, pixels.shape).astype(pixels.dtype)
        maps = explain(pixels + noise)
        for method, original in reference.items():
            norm = float(np.linalg.norm(original))
            change = float(np.linalg.norm(maps[method] - original))
            ratio = change / norm if norm > 0 else (0.0 if change == 0 else float("inf"))
            worst[method] = max(worst[method], ratio)
    return worst
