"""Hash-locked device installs: ``requirements/<profile>.lock`` (``make locks``) pins every
dependency of ``edgesal[<profile>]`` with the sha256 of each published file, so
``pip install --require-hashes -r requirements/device.lock`` installs the same bytes every time.

The fast test checks that each lock still satisfies pyproject.toml; the slow one installs a lock
into a fresh venv with ``--require-hashes`` (from PyPI) and runs ``edgesal run`` there.
"""

from __future__ import annotations

import re
import subprocess
import venv

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from edgesal.runtimes.records import RecordReader
from tests.runtimes import synthetic_tflite
from tests.runtimes.clihelp import ROOT
from tests.runtimes.test_device_install import NOT_ON_A_DEVICE, installed

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; the lock itself serves 3.10 too
PROFILES = ("device", "device-litert")
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def lock_pins(profile: str) -> dict[str, list[tuple[Version, str, int]]]:
    """name -> [(version, marker, number of hashes)]: one entry per marker-split pin."""
    pins: dict[str, list[tuple[Version, str, int]]] = {}
    current = None
    for line in (ROOT / "requirements" / f"{profile}.lock").read_text().splitlines():
        if match := PIN.match(line):
            name, version, marker = match.groups()
            current = [Version(version), (marker or "").strip(), 0]
            pins.setdefault(canonicalize_name(name), []).append(current)
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            current[2] += 1
    return {name: [tuple(p) for p in entries] for name, entries in pins.items()}


def profile_requirements(profile: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] + project["optional-dependencies"][profile]
    return [Requirement(r) for r in names]


@pytest.mark.parametrize("profile", PROFILES)
def test_lock_pins_every_requirement_with_hashes(profile):
    pins = lock_pins(profile)
    assert pins, f"requirements/{profile}.lock holds no pins"
    for requirement in profile_requirements(profile):
        entries = pins.get(canonicalize_name(requirement.name))
        assert entries, f"{requirement.name} is in edgesal[{profile}] but not in the lock"
        for version, _marker, _ in entries:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{profile}.lock pins {requirement.name}=={version}, outside {requirement}; "
                "run `make locks`"
            )
    unhashed = [name for name, entries in pins.items() if any(n == 0 for *_, n in entries)]
    assert not unhashed, f"pins without a hash: {unhashed}"
    heavy = sorted(set(pins) & {canonicalize_name(n) for n in NOT_ON_A_DEVICE})
    assert not heavy, f"the {profile} lock pulls in {heavy}"


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES)
def test_locked_install_with_require_hashes_runs(profile, models, video, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    lock = ROOT / "requirements" / f"{profile}.lock"
    steps = [
        ["install", "-q", "--require-hashes", "--only-binary", ":all:", "-r", str(lock)],
        ["install", "-q", "--no-deps", str(ROOT)],
        ["check"],
    ]
    for step in steps:
        proc = subprocess.run(
            [python, "-m", "pip", *step], capture_output=True, text=True, timeout=1200
        )
        assert proc.returncode == 0, f"pip {' '.join(step)}:\n{proc.stdout[-2000:]}{proc.stderr}"
    packages = installed(python)
    for name, entries in lock_pins(profile).items():
        if any(not marker for _, marker, _ in entries):  # unconditional pins must be there
            assert name in {canonicalize_name(p) for p in packages}, f"{name} not installed"
    if profile == "device":
        model = models["vanilla"]
    else:
        pytest.importorskip("ai_edge_litert", reason="building the test .tflite needs its schema")
        model = synthetic_tflite.build(tmp_path / "m.sal.tflite", size=32)
    records = tmp_path / "r.salrec"
    proc = subprocess.run(
        [str(env_dir / "bin" / "edgesal"), "run", str(model), "--source", str(video)]
        + ["--display", "no", "--records", str(records)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(RecordReader(records).frames())) == 40
