"""Plain gradient methods: vanilla gradient, gradient x input, guided backpropagation."""

from __future__ import annotations

from edgesal.methods.base import MethodContext, method


@method("vanilla", "dS/dx (Simonyan et al. 2014)")
def vanilla(ctx: MethodContext, x: str, copies: int) -> str:
    """A = dS/dx."""
    return ctx.gradient(x, copies)


@method("gradxinput", "x * dS/dx (Shrikumar et al. 2016)")
def gradxinput(ctx: MethodContext, x: str, copies: int) -> str:
    """A = x * dS/dx: a first-order attribution of S(x) - S(0)."""
    return ctx.b.Mul(x, ctx.gradient(x, copies))


@method("guided", "guided backpropagation (Springenberg et al. 2015)")
def guided(ctx: MethodContext, x: str, copies: int) -> str:
    """A = guided dS/dx: ReLU-family backward passes keep only positive gradients where the
    forward input was positive."""
    return ctx.gradient(x, copies, mode="guided")
