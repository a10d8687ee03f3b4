"""Fuzzed readers: the committed corpus (seeds and every input that once broke a reader) must
raise only the project's own errors, and each target is fuzzed for a few seconds in CI
(``make fuzz`` runs them longer; see tests/fuzz/run.py)."""

from __future__ import annotations

import pytest

from tests.fuzz.run import corpus_dir, fuzz
from tests.fuzz.targets import TARGETS, run_one

CI_SECONDS = 1  # per target: 13 targets, under 60 s with their start-up here


@pytest.mark.parametrize("name", list(TARGETS))
def test_corpus_raises_only_project_errors(name):
    files = sorted(corpus_dir(name).iterdir())
    assert files, f"no corpus for {name}: run python -m tests.fuzz.run --seed"
    for file in files:
        try:
            run_one(name, file.read_bytes())
        except Exception as exc:
            pytest.fail(f"{name} on {file.name}: {type(exc).__name__}: {exc}")


def test_every_finding_is_kept_with_its_target():
    """The inputs that broke a reader before the fix; each is replayed by the test above."""
    findings = {
        name: sorted(p.name for p in corpus_dir(name).glob("*-*") if not p.name.startswith("seed"))
        for name in TARGETS
    }
    assert findings["archive"] and findings["onnx_model"] and findings["onnx_device"]
    assert findings["boxes"] and findings["salrec_fields"] and findings["image"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz_briefly(name, tmp_path):
    proc = fuzz(name, CI_SECONDS, tmp_path / "findings")
    found = sorted(p.name for p in (tmp_path / "findings").glob("crash-*"))
    assert proc.returncode == 0 and not found, f"{name}: {found}\n{proc.stdout[-6000:]}"
