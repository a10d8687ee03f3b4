"""Layouts as permutations: a tensor stored with perm P holds ``numpy.transpose(logical, P)``.

The ONNX graph is NCHW; TFLite's convolutions are NHWC (perm :data:`NHWC`). Instead of a transpose
around every convolution, every tensor carries the perm it is stored in, layout-agnostic operators
(elementwise, reductions, concat, slice, pad, transpose ...) work in whatever perm their inputs
have, and a real TRANSPOSE is emitted only where an operator needs another perm. A perm change
that moves only size-1 axes leaves the bytes in place and becomes a RESHAPE.
"""

from __future__ import annotations

from collections.abc import Sequence

Perm = tuple[int, ...]
NHWC: Perm = (0, 2, 3, 1)


def identity(rank: int) -> Perm:
    return tuple(range(rank))


def inverse(perm: Sequence[int]) -> Perm:
    result = [0] * len(perm)
    for i, p in enumerate(perm):
        result[p] = i
    return tuple(result)


def physical(shape: Sequence[int], perm: Sequence[int]) -> tuple[int, ...]:
    """The stored shape of a tensor of logical ``shape`` held in ``perm``."""
    return tuple(int(shape[p]) for p in perm)


def axis_of(perm: Sequence[int], logical_axis: int) -> int:
    """Where logical axis ``logical_axis`` sits in storage."""
    return list(perm).index(logical_axis)


def between(source: Sequence[int], target: Sequence[int]) -> Perm:
    """The TRANSPOSE perm taking storage in ``source`` to storage in ``target``."""
    inv = inverse(source)
    return tuple(inv[t] for t in target)


def same_bytes(shape: Sequence[int], a: Sequence[int], b: Sequence[int]) -> bool:
    """True when storage in ``a`` and in ``b`` is the same byte sequence (only size-1 axes move)."""
    return [p for p in a if shape[p] != 1] == [p for p in b if shape[p] != 1]


def lifted(perm: Sequence[int], rank: int) -> Perm:
    """``perm`` of a tensor broadcast to ``rank`` by leading size-1 axes (kept in front)."""
    extra = rank - len(perm)
    return tuple(range(extra)) + tuple(p + extra for p in perm)


def dropped(perm: Sequence[int], axes: Sequence[int]) -> Perm:
    """``perm`` after removing logical ``axes`` (reductions without keepdims, Squeeze)."""
    gone = set(axes)
    return tuple(p - sum(a < p for a in gone) for p in perm if p not in gone)


def inserted(perm: Sequence[int], axes: Sequence[int]) -> Perm:
    """``perm`` after inserting new logical size-1 ``axes`` (positions in the output), stored
    right after the axis that precedes them logically so the bytes do not move."""
    rank = len(perm) + len(axes)
    new = sorted(a % rank for a in axes)
    old = [i for i in range(rank) if i not in new]  # output positions of the kept axes
    stored = [old[p] for p in perm]
    for a in new:
        before = a - 1
        position = stored.index(before) + 1 if before >= 0 and before in stored else 0
        stored.insert(position, a)
    return tuple(stored)
