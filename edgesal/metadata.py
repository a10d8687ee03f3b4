"""``edgesal.*`` metadata on an ONNX model: the ``metadata_props`` glue around the contract.

The keys, their encoding and the checks of their values are defined once, in
:mod:`edgesal.runtimes.contract` (:data:`~edgesal.runtimes.contract.KEYS`), which the device
runtime reads without the ``onnx`` package (onnxruntime:
``session.get_modelmeta().custom_metadata_map``). This module only moves them in and out of an
``onnx.ModelProto`` and names export flags in its errors.
"""

from __future__ import annotations

from typing import Any

import onnx

from edgesal.errors import InputError
from edgesal.runtimes import contract
from edgesal.runtimes.errors import ModelError

PREFIX = contract.PREFIX


def preprocess_for(
    existing: dict | None, overrides: dict, spatial: tuple[int, int], layout: str, channels: int
) -> dict:
    """The ``preprocess`` entry of an export (:func:`~edgesal.runtimes.contract.merged_preprocess`):
    the model's own with the ``edgesal export`` flags applied; bad values name the flag."""
    try:
        return contract.merged_preprocess(existing, overrides, spatial, layout, channels)
    except ModelError as exc:
        raise InputError(str(exc)) from None


def preprocess(meta: dict, where: str) -> contract.Preprocess | None:
    """The decoded metadata's ``preprocess`` as a checked :class:`Preprocess` (None when the
    model has none); bad values are an :class:`InputError` naming ``where``."""
    raw = meta.get("preprocess")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InputError(f"{where}: edgesal.preprocess is not a JSON object: {str(raw)[:80]}")
    try:
        return contract.Preprocess.from_dict(raw, f"{where}: edgesal.preprocess")
    except ModelError as exc:
        raise InputError(str(exc)) from None


def write(model: onnx.ModelProto, values: dict[str, object]) -> None:
    """Set ``edgesal.<key>`` entries (encoded by the contract), replacing existing ones."""
    try:
        encoded = contract.encode(values)
    except ModelError as exc:
        raise InputError(str(exc)) from None
    kept = [p for p in model.metadata_props if p.key not in encoded]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in encoded.items():
        model.metadata_props.add(key=key, value=value)


def read(props: dict[str, str] | onnx.ModelProto) -> dict[str, Any]:
    """The ``edgesal.*`` entries without the prefix, decoded by the contract (JSON values, so
    ``Any``: each key's reader checks its own)."""
    if isinstance(props, onnx.ModelProto):
        props = {p.key: p.value for p in props.metadata_props}
    return contract.decode(props)
