"""Deletion / insertion over tokens and the weight-randomization check on token models."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgesal.eval.sanity import parametric_layers
from edgesal.eval.tokens import (
    LAST_ATTENTION,
    RANDOM,
    evaluate_texts,
    markdown,
    sanity_cascade,
    token_curves,
)
from edgesal.export import ExportOptions, save
from edgesal.runtimes.text import TextExplainer, TokenExplanation
from edgesal.tokens.export import TokenOptions, export_token_saliency
from tests.tokens.conftest import SEQ
from tests.tokens.test_text import _tokenizer

SPECIAL = (0, 1, 2)
TEXTS = ["w1 w2 w3 w4 w5", "w9 w8 w7", "w20 w21 w22 w23"]


def test_curves_replace_and_restore_in_order():
    """predict: logits (2 + number of 7s, 2); the baseline token is 9."""
    ids = np.array([1, 7, 7, 5, 2, 0, 0, 0])
    mask = (ids != 0).astype(np.int64)
    result = TokenExplanation([], ids, mask, np.zeros(2), 0, "a")

    def predict(batch, masks):
        hits = (batch == 7).sum(1).astype(np.float64)
        return np.stack([2.0 + hits, np.full_like(hits, 2.0)], 1)

    order = np.array([3, 1, 2])
    deletion, insertion = token_curves(predict, result, order, baseline=9)
    p = [np.exp(h) / (np.exp(h) + 1) for h in (2, 2, 1, 0)]
    np.testing.assert_allclose(deletion, p)
    np.testing.assert_allclose(insertion, [p[3], p[3], p[2], p[1]])


@pytest.fixture(scope="module")
def token_setup(small_bert_onnx, tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    tokenizer = _tokenizer(folder / "tokenizer.json")
    options = ExportOptions(
        methods=["vanilla", "gradxinput"], target="input", input="input_ids",
        input_shape=(1, SEQ), reduce="l2",
    )  # fmt: skip
    tokens = TokenOptions(attention=True)
    counter = iter(range(100))

    def export(forward: onnx.ModelProto) -> TextExplainer:
        path = folder / f"m{next(counter)}.onnx"
        save(export_token_saliency(forward, options, tokens), path)
        return TextExplainer(path, tokenizer)

    return export, onnx.load(str(small_bert_onnx))


def test_evaluate_texts_scores_every_ranking(token_setup):
    export, forward = token_setup
    curves = evaluate_texts(export(forward), TEXTS, baseline=3, special=SPECIAL)
    expected = {"vanilla", "gradxinput", "attention_rollout", "attention_gradient"}
    assert set(curves) == expected | {LAST_ATTENTION, RANDOM}
    for c in curves.values():
        assert 0.0 <= c.deletion_auc <= 1.0 and 0.0 <= c.insertion_auc <= 1.0
        assert c.deletion[0] == pytest.approx(c.insertion[-1])  # both: the untouched text
    table = markdown(curves, None)
    assert table.count("\n") == len(curves) + 1


@pytest.mark.slow
def test_sanity_cascade_changes_gradient_maps(token_setup):
    export, forward = token_setup
    result = sanity_cascade(forward, export, TEXTS, SPECIAL)
    assert max(result) == len(parametric_layers(forward))  # the full cascade is the last step
    assert result[max(result)]["vanilla"] < 0.9


def test_eval_cli_on_texts(token_setup, small_bert_onnx, tmp_path, capsys):
    from edgesal import cli

    model = tmp_path / "m.onnx"
    options = ExportOptions(input="input_ids", input_shape=(1, SEQ))
    save(export_token_saliency(small_bert_onnx, options, TokenOptions(attention=True)), model)
    tokenizer = _tokenizer(tmp_path / "tokenizer.json")
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "report"
    code = cli.main(["eval", str(model), "--texts", str(texts), "--tokenizer", str(tokenizer),
                     "-o", str(out), "--baseline-token", "3"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "random: deletion_auc" in printed and "attention_rollout: deletion_auc" in printed
    report = json.loads((out / "report.json").read_text())
    assert set(report["rankings"]) >= {"vanilla", RANDOM, LAST_ATTENTION}
    assert (out / "curves.png").stat().st_size > 0 and "| random |" in (
        out / "report.md"
    ).read_text()
    with pytest.raises(SystemExit):
        cli.main(["eval", str(model), "--texts", str(texts), "-o", str(out), "--bogus"])
    assert cli.main(["eval", str(model), "--texts", str(texts), "-o", str(out)]) == 2
    assert "--texts needs --tokenizer" in capsys.readouterr().err
