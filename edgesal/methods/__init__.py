"""Saliency methods: small graph passes that turn the target's seed into an input attribution.

A method is ``build(ctx, x, copies) -> attribution``: ``x`` is the image tensor, or a batch of
``copies`` samples per image ([N * copies, ...], e.g. noisy copies for SmoothGrad); the result
has ``x``'s shape. Channel reduction and normalization happen afterwards, the same for every method.
Methods register by name; :data:`METHODS` is what the CLI and the tests enumerate.
"""

from edgesal.methods import cam, gradients, integrated  # registers the methods
from edgesal.methods.base import METHODS, Method, MethodContext, method, split_items
from edgesal.options import MethodOptions

__all__ = [
    "METHODS",
    "Method",
    "MethodContext",
    "MethodOptions",
    "method",
    "split_items",
    "cam",
    "gradients",
    "integrated",
]
