"""Graph cleanup passes run after conversion: fewer, simpler ops for the gradient engine."""
