"""Plain gradient methods: vanilla gradient and gradient x input."""

from __future__ import annotations

from edgesal.methods import MethodContext, method


@method("vanilla", "d score / d input (Simonyan et al. 2014)")
def vanilla(ctx: MethodContext) -> str:
    """A = dS/dx."""
    return ctx.gradient()


@method("gradxinput", "input x gradient (Shrikumar et al. 2016)")
def gradxinput(ctx: MethodContext) -> str:
    """A = x * dS/dx: a first-order attribution of S(x) - S(0)."""
    return ctx.b.Mul(ctx.image.tensor, ctx.gradient())
