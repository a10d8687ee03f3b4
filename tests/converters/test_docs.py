"""The lowering table in docs/converters.md is generated from the registry."""

from pathlib import Path

from edgesal.converters.tflite.ops.registry import lowerings_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "converters.md"


def test_lowering_table_is_current():
    text = DOC.read_text()
    start, end = "<!-- tflite-ops:start -->\n", "<!-- tflite-ops:end -->"
    block = text[text.index(start) + len(start) : text.index(end)]
    assert block == lowerings_markdown(), "regenerate: python -m edgesal.converters.tflite.ops"
