"""Forms the gradient rules emit that other passes recognize: one module per idiom, holding its
emitter and its recognizers, so the two sides cannot drift apart.

- :mod:`.masks`: 0/1 activation masks ``Cast(And(Greater(v, a), Less(v, b)))``;
- :mod:`.zero_insertion`: ``ConvTranspose(dy, ones[C, 1, 1, 1], group=C, stride s)``;
- :mod:`.interpolation`: Resize's constant interpolation matrices.

This package sits in the graph layer: the rules (``edgesal.autodiff``) and the converters
(``edgesal.converters``) both import it, so the converters never import the rules.
"""
