"""``python -m converters.tflite.ops``: print the lowering table of docs/converters.md."""

from converters.tflite.ops import LOWERINGS  # noqa: F401  (registers every family)
from converters.tflite.ops.registry import lowerings_markdown

print(lowerings_markdown(), end="")
