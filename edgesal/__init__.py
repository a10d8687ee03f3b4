"""edgesal: gradient saliency appended to ONNX graphs as ordinary inference operators."""

__version__ = "0.1.0"
