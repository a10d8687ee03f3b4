"""Argument types and small file readers the ``edgesal`` commands share."""

from __future__ import annotations

import argparse


def floats(text: str) -> list[float]:
    """``1,2,3`` -> [1.0, 2.0, 3.0]."""
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def read_json_object(path: str | None, flag: str) -> dict | None:
    """A small JSON object file (at most 1 MiB), or None when the flag is not given."""
    import json
    from pathlib import Path

    from edgesal.errors import InputError

    if path is None:
        return None
    file = Path(path)
    if not file.is_file() or file.stat().st_size > 1 << 20:
        raise InputError(f"{flag} {path}: no such file, or larger than 1 MiB")
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{flag} {path}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InputError(f"{flag} {path}: expected a JSON object of fields")
    return value


def read_labels(path: str) -> list[str]:
    from edgesal.errors import InputError
    from edgesal.runtimes.contract import read_labels
    from edgesal.runtimes.errors import DeviceError

    try:
        return list(read_labels(path))
    except DeviceError as exc:
        raise InputError(str(exc)) from None


def positive_int(text: str) -> int:
    """An integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def ints(text: str, count: int, form: str) -> tuple[int, ...]:
    """``count`` comma-separated integers; ``form`` names them in the error (``x0,y0,x1,y1``)."""
    try:
        values = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers {form}") from None
    if len(values) != count:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {count} integers {form}")
    return values


def named_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME=D0,D1,...`` -> (NAME, dims)."""
    name, sep, dims = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=DIMS like state=2,1,128")
    return name, shape_dims(dims)


def shape_dims(text: str) -> tuple[int, ...]:
    """``1,3,224,224`` (or ``1x3x224x224``) -> positive dims."""
    try:
        dims = tuple(int(t) for t in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers like 1,3,224,224") from None
    if any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"{text!r}: dims must be > 0")
    return dims
