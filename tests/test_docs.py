"""Docs that are generated from code must match it."""

from pathlib import Path

from edgesal.autodiff.rules import supported_ops_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_supported_ops_table_is_current():
    table = (ROOT / "docs" / "supported_ops.md").read_text()
    assert table == supported_ops_markdown(), "run: edgesal ops --markdown > docs/supported_ops.md"


def test_light_option_names_match_the_registries():
    """edgesal.options lists method names without importing onnx; it must match the registry."""
    from edgesal.methods import METHODS
    from edgesal.options import METHOD_NAMES

    assert sorted(METHOD_NAMES) == sorted(METHODS)
