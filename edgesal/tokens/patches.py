"""Vision transformers: maps laid on the patch grid.

A ViT/DeiT patch embedding is a Conv whose stride equals its kernel (no padding); its output
[N, D, H/p, W/p] is flattened into P = (H/p)(W/p) tokens after the class (and distillation)
tokens. A map over the T tokens then becomes [N, H/p, W/p] by dropping the first T - P entries and
reshaping row-major.
"""

from __future__ import annotations

import onnx

from edgesal.errors import InputError
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo, attrs

GRID_SUFFIX = "_grid"


def _grid(node: onnx.NodeProto, info: TensorInfo) -> tuple[int, int] | None:
    """(H/p, W/p) if ``node`` is a patch-embedding Conv (stride == kernel, no padding)."""
    if node.op_type != "Conv":
        return None
    a = attrs(node)
    kernel, strides = list(a.get("kernel_shape", [])), list(a.get("strides", []))
    shape = info.dims(node.output[0]) or ()
    if len(shape) != 4 or not kernel or kernel != strides or any(a.get("pads", [])):
        return None
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return None
    rows, cols = shape[2], shape[3]
    return (rows, cols) if isinstance(rows, int) and isinstance(cols, int) else None


def patch_grid(model: onnx.ModelProto, info: TensorInfo, tensor: str) -> tuple[int, int]:
    """(H/p, W/p) of the patch-embedding Conv that ``tensor`` depends on."""
    needed = {tensor}
    for node in reversed(model.graph.node):
        if any(o in needed for o in node.output):
            needed.update(n for n in node.input if n)
    for node in model.graph.node:
        grid = _grid(node, info) if node.output[0] in needed else None
        if grid is not None:
            return grid
    raise InputError(
        f"--patch-map: no patch embedding (a Conv whose stride equals its kernel) feeds '{tensor}'"
    )


def patch_embedding(
    model: onnx.ModelProto, info: TensorInfo, image: str
) -> tuple[str, tuple[int, int]]:
    """(output [N, D, H/p, W/p], (H/p, W/p)) of the first patch-embedding Conv that reads
    ``image`` (through any preprocessing nodes)."""
    reached = {image}
    for node in model.graph.node:
        if not any(i in reached for i in node.input):
            continue
        grid = _grid(node, info)
        if grid is not None:
            return node.output[0], grid
        reached.update(node.output)
    raise InputError(
        f"--attention/--patch-map on image input '{image}': no patch embedding (a Conv whose "
        "stride equals its kernel, as in ViT/DeiT) reads it; these flags are for vision "
        "transformers (token models: --input TOKEN_IDS or --wrt TENSOR)"
    )


def on_grid(b: Builder, token_map: str, n: int, length: int, grid: tuple[int, int]) -> str:
    """[N, T] -> [N, H/p, W/p]: the last P = (H/p)(W/p) tokens, row-major on the grid."""
    patches = grid[0] * grid[1]
    if patches > length:
        raise InputError(f"--patch-map: {patches} patches but only {length} tokens")
    tail = b.Slice(token_map, b.ints([length - patches]), b.ints([length]), b.ints([1]))
    return b.Reshape(tail, b.ints([n, *grid]))
