"""Every registered gradient rule is checked against float64 finite differences."""

import zlib

import numpy as np
import pytest

import tests.rule_cases  # noqa: F401  (registers the cases)
from edgesal.autodiff.registry import RULES
from tests.gradcheck import CASES, check_case


def _all_cases():
    for op_type in sorted(CASES):
        for i, generator in enumerate(CASES[op_type]):
            for case in generator(np.random.default_rng(zlib.crc32(op_type.encode()) + i)):
                if case.op_type == op_type:
                    yield pytest.param(case, id=case.label())


def test_every_rule_has_cases():
    """Every non-zero rule yields at least one case of its own op type (a registered generator
    that yields nothing, or only other ops, would leave the rule unchecked). Zero-derivative
    rules (comparisons, Floor, Shape, ...) are checked in tests/test_kinks.py."""
    zero = {op for op, rule in RULES.items() if rule.zero}
    checked = {param.values[0].op_type for param in _all_cases()}
    missing = sorted(set(RULES) - checked - zero)
    assert not missing, f"gradient rules without a finite-difference test case: {missing}"


@pytest.mark.parametrize("case", list(_all_cases()))
def test_rule_matches_finite_differences(case):
    check_case(case)
