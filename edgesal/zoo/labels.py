"""ImageNet-1k class names, index = class id, as torchvision lists them (0 ``tench`` ...).

``imagenet_classes.txt`` was produced from ``_IMAGENET_CATEGORIES`` in torchvision 0.29.1's
``torchvision/models/_meta.py`` (read as text from the wheel, not imported), one name a line.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from edgesal.errors import ModelLoadError

CLASSES = 1000


@cache
def _names() -> tuple[str, ...]:
    text = resources.files("edgesal.zoo").joinpath("imagenet_classes.txt").read_text("utf-8")
    names = tuple(text.splitlines())
    if len(names) != CLASSES:
        raise ModelLoadError(f"imagenet_classes.txt holds {len(names)} names, expected {CLASSES}")
    return names


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names; ``labels[i]`` names class id ``i``."""
    return list(_names())
