"""Real photographs shipped by scikit-image and scikit-learn, for demos and sanity checks.

No download: both packages carry the files in their wheels. They are the ``demo`` extra, so they
are imported only here, on first use.
"""

from __future__ import annotations

import numpy as np

from edgesal.errors import EdgesalError

SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
SKLEARN_PHOTOS = ("china", "flower")


def photos() -> dict[str, np.ndarray]:
    """``{name: RGB uint8 HxWx3}``: a cat, a cup of coffee, an astronaut, a rocket, a temple in
    China and a flower (skimage.data and sklearn's sample images)."""
    try:
        import skimage.data
        from sklearn.datasets import load_sample_image
    except ImportError as exc:
        raise EdgesalError(
            f"the demo photos need scikit-image and scikit-learn ({exc.name} is missing); "
            "install them with: pip install 'edgesal[demo]'"
        ) from exc
    images = {name: getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS}
    images |= {name: load_sample_image(f"{name}.jpg") for name in SKLEARN_PHOTOS}
    return {name: np.ascontiguousarray(image, dtype=np.uint8) for name, image in images.items()}
