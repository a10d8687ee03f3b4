"""Gradient rules are typed by RuleFn: each declares its types, and the type checker (``make
typecheck``) refuses a rule whose signature differs, through :func:`register`'s bound."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest

from edgesal.autodiff.registry import RULES, GradContext

REPO = Path(__file__).resolve().parents[1]

WRONG_RULES = """\
from edgesal.autodiff.registry import GradContext, register


@register("Relu")
def two_parameters(ctx: GradContext, extra: int) -> list[str | None]:
    return [None]


@register("Relu")
def one_name_not_a_list(ctx: GradContext) -> str:
    return ""


@register("Relu")
def right(ctx: GradContext) -> list[str | None]:
    return [ctx.dy0]
"""


def test_every_rule_declares_the_rule_signature():
    """An unannotated rule would be Callable[..., Any] to the checker and pass any bound."""
    for op_type, rule in sorted(RULES.items()):
        params = list(inspect.signature(rule.fn).parameters)
        hints = typing.get_type_hints(rule.fn)
        assert len(params) == 1 and hints.get(params[0]) is GradContext, op_type
        assert hints.get("return") == list[str | None], op_type


@pytest.mark.slow
def test_mypy_refuses_rules_with_another_signature(tmp_path):
    """Two wrong rules (an extra parameter; one name instead of a list, which the engine would
    split into characters) fail the check on their decorator lines; the right one passes."""
    source = tmp_path / "wrong_rules.py"
    source.write_text(WRONG_RULES)
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
         "--follow-imports=silent", "--cache-dir", str(tmp_path / "cache"), str(source)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    errors = [line for line in run.stdout.splitlines() if ": error:" in line]
    assert run.returncode == 1, run.stdout + run.stderr
    lines = sorted(int(line.split(":")[1]) for line in errors)
    assert lines == [4, 9], textwrap.indent(run.stdout, "  ")
    assert all('type variable "RuleFnT"' in line for line in errors), run.stdout
