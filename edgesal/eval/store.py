"""Finished task results on disk, so a killed audit resumes where it stopped.

One ``.npz`` per task under ``<out>/.work/<fingerprint>/``: the task's numbers as JSON bytes plus
its arrays, written to a temporary name and renamed (a kill leaves no half-written result). The
fingerprint hashes the model bytes, the options and the task list's inputs, so a changed model or
setting starts a fresh folder instead of mixing results. Files are read with
``allow_pickle=False``: nothing in them can execute code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from edgesal import __version__
from edgesal.errors import InputError

NUMBERS = "__numbers__"


def fingerprint(*parts: bytes | str | dict) -> str:
    """sha256 over the parts (dicts as sorted JSON) and the edgesal version, 16 hex digits."""
    digest = hashlib.sha256(__version__.encode())
    for part in parts:
        if isinstance(part, dict):
            part = json.dumps(part, sort_keys=True, default=str)
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _file_key(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:20]


class ResultStore:
    """``save(key, numbers, arrays)`` / ``load(key)`` for finished tasks under ``folder``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"-o {self.folder}: cannot create the work folder: {exc}") from exc

    def path(self, key: str) -> Path:
        return self.folder / f"{_file_key(key)}.npz"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def save(self, key: str, numbers: dict, arrays: dict[str, np.ndarray]) -> None:
        blob = json.dumps({"key": key, "numbers": numbers}).encode()
        buffer = io.BytesIO()
        np.savez(buffer, **{NUMBERS: np.frombuffer(blob, np.uint8)}, **arrays)
        final = self.path(key)
        temporary = final.with_suffix(f".tmp{os.getpid()}")
        temporary.write_bytes(buffer.getvalue())
        os.replace(temporary, final)

    def load(self, key: str) -> tuple[dict, dict[str, np.ndarray]] | None:
        """The stored result, or None when there is none or it cannot be read."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                record = json.loads(data[NUMBERS].tobytes())
                arrays = {k: data[k] for k in data.files if k != NUMBERS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if record.get("key") != key:
            return None
        return record["numbers"], arrays
