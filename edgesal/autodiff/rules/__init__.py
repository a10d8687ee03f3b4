"""Gradient rules, one module per operator family; importing this package registers them all."""

from edgesal.autodiff.rules import (  # noqa: F401
    activation,
    conv,
    elementwise,
    linear,
    normalization,
    pooling,
    reduction,
    resize,
    shape,
)
