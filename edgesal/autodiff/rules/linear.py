"""Matrix products: Gemm and MatMul (numpy semantics: batched, broadcast, 1-D operands).

Gradients of 2-D products are emitted as Gemm with transpose flags, so no Transpose node is
needed (and a converter maps Gemm(dy, W, transB=1) to a fully connected layer).
"""

from __future__ import annotations

import numpy as np

from edgesal.autodiff.registry import GradContext, register, unbroadcast


@register("Gemm")
def gemm(ctx: GradContext) -> list[str | None]:
    """Y = alpha A' B' + beta C with A' = A or A^T, B' = B or B^T.

    dA' = alpha dy B'^T, dB' = alpha A'^T dy, dC = beta dy summed over C's broadcast axes.
    """
    a, b = ctx.x[:2]
    dy = ctx.dy0
    alpha, beta = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0)
    trans_a, trans_b = ctx.attr("transA", 0), ctx.attr("transB", 0)
    grads: list[str | None] = [None] * len(ctx.x)
    if ctx.needs[0]:
        grads[0] = (
            ctx.b.Gemm(b, dy, alpha=alpha, transA=trans_b, transB=1)
            if trans_a
            else ctx.b.Gemm(dy, b, alpha=alpha, transB=1 - trans_b)
        )
    if ctx.needs[1]:
        grads[1] = (
            ctx.b.Gemm(dy, a, alpha=alpha, transA=1, transB=trans_a)
            if trans_b
            else ctx.b.Gemm(a, dy, alpha=alpha, transA=1 - trans_a)
        )
    if len(ctx.x) > 2 and ctx.x[2] and ctx.needs[2]:
        scaled = dy if beta == 1.0 else ctx.b.Mul(dy, ctx.scalar(beta, ctx.y[0]))
        grads[2] = unbroadcast(ctx.b, ctx.info, scaled, ctx.shape(ctx.y[0]), ctx.x[2])
    return grads


@register("MatMul")
def matmul(ctx: GradContext) -> list[str | None]:
    """Y = A @ B: dA = dy @ B^T, dB = A^T @ dy, each summed over the batch axes it was broadcast
    along. A 1-D A is a row [1, K] and a 1-D B a column [K, 1], as in numpy."""
    a, b = ctx.x
    a_shape, b_shape = ctx.shape(a), ctx.shape(b)
    a_mat = (1, *a_shape) if len(a_shape) == 1 else a_shape
    b_mat = (*b_shape, 1) if len(b_shape) == 1 else b_shape
    batch = tuple(np.broadcast_shapes(a_mat[:-2], b_mat[:-2]))
    full = (*batch, a_mat[-2], b_mat[-1])
    dy = ctx.dy0
    if tuple(ctx.shape(ctx.y[0])) != full:
        dy = ctx.b.Reshape(dy, ctx.b.ints(full))
    grads: list[str | None] = [None, None]
    if ctx.needs[0]:
        grad = _product(ctx, (dy, False), _transpose(ctx, b, b_mat), len(full))
        grads[0] = _sum_to(ctx, grad, (*batch, *a_mat[-2:]), a_mat, a_shape)
    if ctx.needs[1]:
        grad = _product(ctx, _transpose(ctx, a, a_mat), (dy, False), len(full))
        grads[1] = _sum_to(ctx, grad, (*batch, *b_mat[-2:]), b_mat, b_shape)
    return grads


def _transpose(ctx: GradContext, name: str, matrix: tuple[int, ...]) -> tuple[str, bool]:
    """The operand's (stacked) transpose, as (tensor, still to be transposed).

    A 1-D operand is reshaped straight to its transposed matrix; others are transposed by the
    product (a Gemm flag in 2-D, a Transpose of the last two axes otherwise).
    """
    if len(ctx.shape(name)) == 1:
        return ctx.b.Reshape(name, ctx.b.ints([matrix[-1], matrix[-2]])), False
    return name, True


def _product(ctx: GradContext, left: tuple[str, bool], right: tuple[str, bool], rank: int) -> str:
    """left @ right for (tensor, transposed) operands; a 2-D product is one Gemm."""
    (lhs, trans_l), (rhs, trans_r) = left, right
    if rank == 2:
        return ctx.b.Gemm(lhs, rhs, transA=int(trans_l), transB=int(trans_r))
    if trans_l:
        lhs = _swap_last_axes(ctx, lhs)
    if trans_r:
        rhs = _swap_last_axes(ctx, rhs)
    return ctx.b.MatMul(lhs, rhs)


def _swap_last_axes(ctx: GradContext, name: str) -> str:
    rank = len(ctx.shape(name))
    return ctx.b.Transpose(name, perm=[*range(rank - 2), rank - 1, rank - 2])


def _sum_to(
    ctx: GradContext,
    grad: str,
    grad_shape: tuple[int, ...],
    matrix: tuple[int, ...],
    shape: tuple[int, ...],
) -> str:
    """Sum ``grad`` over the batch axes the operand was broadcast along; reshape to ``shape``."""
    lead = len(grad_shape) - len(matrix)
    padded = (1,) * lead + tuple(matrix)
    axes = [i for i, (g, m) in enumerate(zip(grad_shape, padded, strict=True)) if m == 1 and g != 1]
    axes = sorted(set(axes) | set(range(lead)))
    if axes:
        grad = ctx.b.ReduceSum(grad, ctx.b.ints(axes), keepdims=1)
    if tuple(shape) != tuple(grad_shape):
        grad = ctx.b.Reshape(grad, ctx.b.ints(shape))
    return grad
