"""Vision transformers: token maps laid back on the patch grid (``--patch-map``).

A ViT/DeiT patch embedding is a Conv whose stride equals its kernel; its output [N, D, H/p, W/p]
is flattened into P = (H/p)(W/p) tokens after the class (and distillation) tokens. A map over
the T tokens then becomes [N, H/p, W/p] by dropping the first T - P entries and reshaping.
"""

from __future__ import annotations

import onnx

from edgesal.errors import InputError
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo, attrs

GRID_SUFFIX = "_grid"


def patch_grid(model: onnx.ModelProto, info: TensorInfo, tensor: str) -> tuple[int, int]:
    """(H/p, W/p) of the patch-embedding Conv (stride == kernel) that ``tensor`` depends on."""
    needed = {tensor}
    for node in reversed(model.graph.node):
        if any(o in needed for o in node.output):
            needed.update(n for n in node.input if n)
    for node in model.graph.node:
        if node.op_type != "Conv" or node.output[0] not in needed:
            continue
        a = attrs(node)
        kernel, strides = list(a.get("kernel_shape", [])), list(a.get("strides", []))
        shape = info.shape(node.output[0])
        if len(shape) == 4 and kernel and kernel == strides and not any(a.get("pads", [])):
            return shape[2], shape[3]
    raise InputError(
        f"--patch-map: no patch embedding (a Conv whose stride equals its kernel) feeds '{tensor}'"
    )


def on_grid(b: Builder, token_map: str, n: int, length: int, grid: tuple[int, int]) -> str:
    """[N, T] -> [N, H/p, W/p]: the last P = (H/p)(W/p) tokens, row-major on the grid."""
    patches = grid[0] * grid[1]
    if patches > length:
        raise InputError(f"--patch-map: {patches} patches but only {length} tokens")
    tail = b.Slice(token_map, b.ints([length - patches]), b.ints([length]), b.ints([1]))
    return b.Reshape(tail, b.ints([n, *grid]))
