"""The integrated-gradients reference point on token embeddings.

Sundararajan et al. 2017 use an all-zero embedding for text; a [PAD] or [MASK] token's embedding is
the other common choice. Special tokens ([CLS], [SEP], padding: ``--special-tokens``) keep their
own embedding in the reference, so the path changes only the words and they get no attribution.
"""

from __future__ import annotations

import re

import numpy as np
from onnx.helper import np_dtype_to_tensor_dtype

from edgesal.errors import InputError
from edgesal.graph.builder import Builder
from edgesal.methods.base import repeat_items

_TOKEN_SPEC = re.compile(r"token:(\d+)")


def token_spec(baseline_token: int | None) -> str:
    """The ``--baseline`` value that ``--baseline-token ID`` stands for."""
    return "zeros" if baseline_token is None else f"token:{baseline_token}"


def token_reference(
    b: Builder, spec: str, ids: str, x: str, table: str, vocab: int, special: tuple[int, ...],
    shape: tuple[int, ...], copies: int, dtype, ids_dtype,
) -> str:  # fmt: skip
    """x' shaped like the points ``x`` [N * copies, T, D]: E[ID] (``token:ID``) or 0
    (``zeros``) where the ids [N, T] are not special, else x itself (a noisy copy's own value, so
    special tokens get no attribution under ``--smooth`` either)."""
    n, length, width = shape
    if spec == "zeros":
        fill = b.const(np.zeros((1, 1, width), dtype), hint="baseline")
    elif m := _TOKEN_SPEC.fullmatch(spec):
        index = int(m.group(1))
        if index >= vocab:
            raise InputError(f"--baseline-token {index}: the embedding table has {vocab} rows")
        fill = b.Gather(table, b.const(np.array([[index]], ids_dtype), hint="baseline_id"))
    else:
        raise InputError(f"--baseline {spec}: token inputs take zeros or --baseline-token ID")
    if not special:
        return b.Expand(fill, b.ints([n, length, width]))
    hits = [b.Equal(ids, b.const(np.asarray(s, ids_dtype), hint="special")) for s in special]
    keep = hits[0]
    for hit in hits[1:]:
        keep = b.Or(keep, hit)
    keep = b.Unsqueeze(b.Cast(keep, to=np_dtype_to_tensor_dtype(np.dtype(dtype))), b.ints([2]))
    keep = repeat_items(b, keep, (n // copies, length, 1), copies)
    one = b.const(np.ones((), dtype))
    return b.Add(b.Mul(keep, x), b.Mul(b.Sub(one, keep), fill))
