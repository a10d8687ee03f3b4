"""A small BERT (fixed random weights) exported to ONNX once per session, and one sentence."""

from __future__ import annotations

import numpy as np
import pytest

from tests.tokens.bert import BertConfig, export_onnx, random_bert

SEQ = 8
IDS = np.array([[1, 5, 7, 9, 11, 2, 0, 0]], dtype=np.int64)  # [CLS] w w w w [SEP] pad pad
MASK = np.array([[1, 1, 1, 1, 1, 1, 0, 0]], dtype=np.int64)


@pytest.fixture(scope="session")
def small_bert():
    return random_bert(BertConfig())


@pytest.fixture(scope="session")
def small_bert_onnx(small_bert, tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "bert.onnx"
    export_onnx(small_bert, path, SEQ)
    return path


def feeds(ids=IDS, mask=MASK) -> dict[str, np.ndarray]:
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
