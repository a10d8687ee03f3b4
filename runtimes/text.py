"""Token explanations on a device: text (or token ids) in, the prediction and one score per token
for every map the model computes (gradient methods, attention rollout, attention gradient), from
one inference call of a model written by ``edgesal export --input input_ids``.

Needs numpy and one backend (onnxruntime or LiteRT). Text needs the ``tokenizers`` library
(``pip install "edgesal[text]"``), imported only when a tokenizer is loaded; callers that tokenize
themselves pass ids to :meth:`TextExplainer.explain_ids`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgesal.runtimes.backends import Backend, BackendOptions, load_backend
from edgesal.runtimes.contract import SALIENCY, decode
from edgesal.runtimes.errors import DeviceError, ModelError
from edgesal.runtimes.records import RecordWriter

log = logging.getLogger("edgesal.runtimes.text")
ATTENTION = "attention"
TARGET_INPUT = "target"
TOKEN_MAPS = ("attention_rollout", "attention_gradient")
TOKENS_KIND = "tokens"  # the .salrec map kind of an explained text
MAX_TOKENIZER_BYTES = 64 << 20
PAD_NAMES = ("[PAD]", "<pad>")


class TextError(DeviceError):
    """Text that does not fit the model (too long with truncation off), or a tokenizer whose
    vocabulary does not match the model's embedding table."""


@dataclass
class TokenExplanation:
    """One sequence: ``tokens`` (strings), ``maps`` name -> [T] scores (0 on padding),
    ``attention`` [L, T, T] when the model has it, ``scores`` [K] and the explained ``target``."""

    tokens: list[str]
    ids: np.ndarray
    mask: np.ndarray
    scores: np.ndarray
    target: int
    label: str
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    attention: np.ndarray | None = None
    truncated: bool = False

    def words(self) -> list[tuple[str, dict[str, float]]]:
        """(token, {map: score}) for the unmasked positions, in order."""
        keep = np.flatnonzero(self.mask)
        return [(self.tokens[i], {k: float(v[i]) for k, v in self.maps.items()}) for i in keep]


class TextExplainer:
    """A token saliency model and (optionally) its tokenizer; see :mod:`edgesal.runtimes.text`."""

    def __init__(
        self,
        model: str | Path,
        tokenizer: str | Path | None = None,
        truncate: bool = True,
        options: BackendOptions | None = None,
    ):
        self.backend = load_backend(model, options)
        self.meta = decode(self.backend.metadata)
        if self.meta.get("modality") != "tokens":
            raise ModelError(
                f"{model}: not a token saliency model (export it with --input input_ids)"
            )
        facts = self.meta.get("tokens") if isinstance(self.meta.get("tokens"), dict) else {}
        self.ids_input = str(self.meta["input"])
        self.mask_input = facts.get("mask_input")
        shape = self.backend.inputs[self.ids_input][0]
        self.length = int(shape[1])
        self.vocab = facts.get("vocab")
        self.labels = [str(x) for x in self.meta.get("labels") or []]
        declared = self.meta.get("outputs") if isinstance(self.meta.get("outputs"), dict) else {}
        self.scores = str(declared.get("scores") or self.backend.outputs[0])
        by_method = declared.get("saliency_by_method") or {
            str(self.meta.get("method", SALIENCY)): declared.get("saliency", SALIENCY)
        }
        self.map_outputs = dict(by_method)
        self.map_outputs.update({k: k for k in TOKEN_MAPS if k in self.backend.outputs})
        self.truncate = truncate
        self._scores_only: Backend | None = None  # a prediction-only backend, made on first use
        self.tokenizer = load_tokenizer(tokenizer, self.vocab, self.length) if tokenizer else None

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class {index}"

    def explain(self, text: str, target: int | None = None) -> TokenExplanation:
        """Tokenize ``text`` (padded/truncated to the model's length T) and explain it (class
        ``target`` when the model was exported with --target input; default its top class)."""
        if self.tokenizer is None:
            raise TextError("explain(text) needs a tokenizer; pass tokenizer=tokenizer.json")
        encoding = self.tokenizer.encode(text)
        truncated = bool(encoding.overflowing)
        if truncated and not self.truncate:
            raise TextError(
                f"the text has more than {self.length} tokens, the model's sequence length "
                "(allow truncation, or export with a longer --input-shape 1,T)"
            )
        if truncated:
            log.warning("text truncated to the model's %d tokens", self.length)
        result = self.explain_ids(
            np.asarray(encoding.ids), np.asarray(encoding.attention_mask), encoding.tokens, target
        )
        result.truncated = truncated
        return result

    def explain_ids(
        self,
        ids: np.ndarray,
        mask: np.ndarray | None = None,
        tokens: list[str] | None = None,
        target: int | None = None,
    ) -> TokenExplanation:
        """Explain one sequence of ``ids`` [T] (``mask`` [T]: 1 token, 0 padding)."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        if ids.size != self.length:
            raise TextError(f"{ids.size} token ids; the model takes exactly {self.length}")
        if self.vocab is not None and (ids.min() < 0 or ids.max() >= int(self.vocab)):
            raise TextError(f"token ids must lie in [0, {self.vocab}) (the embedding rows)")
        mask = np.ones_like(ids) if mask is None else np.asarray(mask, np.int64).reshape(-1)
        feeds = self._feeds(ids, mask)
        if TARGET_INPUT in self.backend.inputs:
            if target is None:
                target = int(np.argmax(self.predict(ids[None], mask[None])[0]))
            feeds[TARGET_INPUT] = np.asarray([target], self.backend.inputs[TARGET_INPUT][1])
        names = [self.scores, *self.map_outputs.values()]
        if ATTENTION in self.backend.outputs:
            names.append(ATTENTION)
        values = dict(zip(names, self.backend.run(names, feeds), strict=True))
        scores = np.asarray(values[self.scores]).reshape(-1)
        target = int(np.argmax(scores)) if target is None else target
        attention = values.get(ATTENTION)
        return TokenExplanation(
            tokens=list(tokens) if tokens is not None else [str(i) for i in ids],
            ids=ids,
            mask=mask,
            scores=scores,
            target=target,
            label=self.label(target),
            maps={k: np.asarray(values[v]).reshape(-1) for k, v in self.map_outputs.items()},
            attention=None if attention is None else np.asarray(attention)[0],
        )

    def predict(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Scores [M, K] of M sequences [M, T], one prediction-only call each (no maps)."""
        if self._scores_only is None:
            self._scores_only = self.backend.subset([self.scores])
        rows = []
        for one_ids, one_mask in zip(np.asarray(ids), np.asarray(mask), strict=True):
            feeds = self._feeds(np.asarray(one_ids, np.int64), np.asarray(one_mask, np.int64))
            feeds.pop(TARGET_INPUT, None)
            rows.append(np.asarray(self._scores_only.run([self.scores], feeds)[0]).reshape(-1))
        return np.stack(rows)

    def _feeds(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """ids and mask as the model's dtypes; other inputs (token types) zeros of their shape."""
        feeds = {}
        for name, (shape, dtype) in self.backend.inputs.items():
            if name == TARGET_INPUT:
                continue
            if name == self.ids_input:
                value = ids
            elif name == self.mask_input:
                value = mask
            else:
                value = np.zeros([int(d) if isinstance(d, int) and d > 0 else 1 for d in shape])
            feeds[name] = np.asarray(value, dtype).reshape(
                [1, -1] if value.ndim == 1 else value.shape
            )
        return feeds


def load_tokenizer(path: str | Path, vocab: int | None, length: int):
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json``, padding and truncating to ``length``;
    its vocabulary must have ``vocab`` entries (the model's embedding rows)."""
    path = Path(path)
    if not path.is_file():
        raise TextError(f"--tokenizer {path}: no such file")
    if path.stat().st_size > MAX_TOKENIZER_BYTES:
        raise TextError(f"--tokenizer {path}: larger than {MAX_TOKENIZER_BYTES >> 20} MiB")
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise TextError(
            'explaining text needs the tokenizers library: pip install "edgesal[text]"'
        ) from exc
    try:
        tokenizer = Tokenizer.from_str(path.read_text(encoding="utf-8"))
    except Exception as exc:  # the Rust parser raises plain Exception; UnicodeDecodeError too
        raise TextError(f"--tokenizer {path}: not a tokenizers JSON file ({exc})") from exc
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab is not None and size != int(vocab):
        raise TextError(
            f"--tokenizer {path}: its vocabulary has {size} tokens, the model's embedding table "
            f"has {vocab} rows (a tokenizer of another model?)"
        )
    pad = next((t for t in PAD_NAMES if tokenizer.token_to_id(t) is not None), None)
    pad_id = tokenizer.token_to_id(pad) if pad else 0
    tokenizer.enable_truncation(max_length=length)
    tokenizer.enable_padding(length=length, pad_id=pad_id, pad_token=pad or "[PAD]")
    return tokenizer


def token_frame(result: TokenExplanation, index: int = 0) -> tuple[dict, np.ndarray]:
    """(frame meta, map) of one explained text for ``.salrec``: map kind ``tokens`` [M, T'], a
    row per map (``rows``), a column per real (unmasked) token (``tokens``)."""
    keep = np.flatnonzero(result.mask)
    rows = list(result.maps)
    grid = np.stack([np.asarray(result.maps[r], np.float32)[keep] for r in rows])
    meta = {
        "frame": index,
        "target": result.target,
        "label": result.label,
        "scores": [float(x) for x in result.scores],
        "truncated": result.truncated,
        "map": {
            "kind": TOKENS_KIND,
            "axes": ["map", "token"],
            "rows": rows,
            "tokens": [result.tokens[i] for i in keep],
        },
    }
    return meta, grid


def write_records(path: str | Path, explainer: TextExplainer, results: list[TokenExplanation],
                  bits: int = 16) -> None:  # fmt: skip
    """``.salrec`` with a stream header (modality ``tokens``) and one frame per explained text."""
    header = {
        "model": str(explainer.backend.path),
        "modality": TOKENS_KIND,
        "methods": list(explainer.map_outputs),
        "labels": explainer.labels,
    }
    writer = RecordWriter(path, header, bits=bits)
    try:
        for index, result in enumerate(results):
            writer.frame(*token_frame(result, index))
    finally:
        writer.close()
