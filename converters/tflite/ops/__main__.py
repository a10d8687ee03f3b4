"""``python -m edgesal.converters.tflite.ops``: print the lowering table of docs/converters.md."""

from edgesal.converters.tflite.ops import LOWERINGS  # noqa: F401  (registers every family)
from edgesal.converters.tflite.ops.registry import lowerings_markdown

print(lowerings_markdown(), end="")
