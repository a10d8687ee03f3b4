"""TextExplainer (runtimes) and ``edgesal explain-text``: a WordLevel tokenizer over the small
BERT's 50-token vocabulary; bad tokenizers and texts longer than T are refused by name."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from edgesal import cli
from edgesal.export import ExportOptions, export_saliency, save
from edgesal.runtimes.errors import ModelError
from edgesal.runtimes.text import TextError, TextExplainer
from edgesal.tokens.export import TOKEN_METHODS, TokenOptions, export_token_saliency
from tests.models import nchw_cnn
from tests.tokens.conftest import SEQ, feeds

tokenizers = pytest.importorskip("tokenizers")
WORDS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"] + [f"w{i}" for i in range(46)]


def _tokenizer(path, words=WORDS):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def text_model(small_bert_onnx, tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    options = ExportOptions(
        methods=["vanilla", "gradxinput"], input="input_ids", input_shape=(1, SEQ), reduce="l2",
        labels=["a", "b", "c"],
    )  # fmt: skip
    model = export_token_saliency(small_bert_onnx, options, TokenOptions(attention=True))
    save(model, folder / "m.sal.onnx")
    return folder / "m.sal.onnx", _tokenizer(folder / "tokenizer.json"), model


def test_explainer_equals_direct_run(text_model):
    path, tokenizer, model = text_model
    explainer = TextExplainer(path, tokenizer)
    result = explainer.explain("w1 w3 w5 w7")
    assert result.tokens[:6] == ["[CLS]", "w1", "w3", "w5", "w7", "[SEP]"]
    assert list(result.mask) == [1] * 6 + [0] * (SEQ - 6)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.array([[1, 5, 7, 9, 11, 2, 0, 0]])
    mask = (ids != 0).astype(np.int64)
    names = [o.name for o in session.get_outputs()]
    direct = dict(zip(names, session.run(None, feeds(ids, mask)), strict=True))
    np.testing.assert_allclose(result.maps["vanilla"], direct["saliency_vanilla"][0], atol=1e-6)
    np.testing.assert_allclose(result.maps["attention_rollout"], direct["attention_rollout"][0])
    assert result.label == "abc"[int(direct["scores"].argmax())]
    assert set(result.maps) == {"vanilla", "gradxinput", "attention_rollout", "attention_gradient"}
    assert result.attention.shape == (2, SEQ, SEQ)


def test_long_text_truncated_or_refused(text_model, caplog):
    path, tokenizer, _ = text_model
    long_text = " ".join(f"w{i}" for i in range(20))
    result = TextExplainer(path, tokenizer).explain(long_text)
    assert result.truncated and len(result.tokens) == SEQ and result.tokens[-1] == "[SEP]"
    assert "truncated" in caplog.text
    with pytest.raises(TextError, match="more than 8 tokens"):
        TextExplainer(path, tokenizer, truncate=False).explain(long_text)


def test_tokenizer_of_another_vocabulary_refused(text_model, tmp_path):
    path, _, _ = text_model
    other = _tokenizer(tmp_path / "other.json", WORDS[:40])
    with pytest.raises(
        TextError, match="vocabulary has 40 tokens, the model's embedding table has 50"
    ):
        TextExplainer(path, other)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(TextError, match="not a tokenizers JSON file"):
        TextExplainer(path, broken)


def test_image_model_is_not_a_text_model(tmp_path):
    save(export_saliency(nchw_cnn(), ExportOptions()), tmp_path / "img.onnx")
    with pytest.raises(ModelError, match="not a token saliency model"):
        TextExplainer(tmp_path / "img.onnx")


def test_cli_export_and_explain_text(small_bert_onnx, tmp_path, capsys):
    out = tmp_path / "m.sal.onnx"
    code = cli.main([
        "export", str(small_bert_onnx), "-o", str(out), "--input", "input_ids",
        "--input-shape", f"1,{SEQ}", "--attention", "--rollout-from", "mean",
    ])  # fmt: skip
    assert code == 0
    tokenizer = _tokenizer(tmp_path / "tokenizer.json")
    lines = tmp_path / "lines.txt"
    lines.write_text("w1 w2\nw3 w4 w5\n")
    html, js = tmp_path / "out.html", tmp_path / "out.json"
    code = cli.main([
        "explain-text", str(out), "--tokenizer", str(tokenizer), "w9 w8", "--file", str(lines),
        "--html", str(html), "--json", str(js),
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "w9(" in printed and "w5(" in printed
    data = json.loads(js.read_text())
    assert [d["text"] for d in data] == ["w9 w8", "w1 w2", "w3 w4 w5"]
    assert [t["token"] for t in data[0]["tokens"]] == ["[CLS]", "w9", "w8", "[SEP]"]
    assert "attention_gradient" in html.read_text()
    with pytest.raises(SystemExit):
        cli.main(["explain-text", str(out), "--tokenizer", str(tokenizer), "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_token_records_round_trip(text_model, tmp_path):
    from edgesal.runtimes.records import RecordReader
    from edgesal.runtimes.text import write_records

    path, tokenizer, _ = text_model
    explainer = TextExplainer(path, tokenizer)
    results = [explainer.explain("w1 w2 w3"), explainer.explain("w4")]
    write_records(tmp_path / "t.salrec", explainer, results)
    reader = RecordReader(tmp_path / "t.salrec")
    assert reader.headers()[0]["modality"] == "tokens"
    frames = list(reader.frames())
    assert [f.kind for f in frames] == ["tokens", "tokens"]
    first = frames[0]
    assert first.meta["map"]["tokens"] == ["[CLS]", "w1", "w2", "w3", "[SEP]"]
    rows = first.meta["map"]["rows"]
    assert rows == list(results[0].maps)
    for i, name in enumerate(rows):
        expected = results[0].maps[name][:5]
        scale = first.meta["map"]["scale"]
        np.testing.assert_allclose(first.saliency[i], expected, atol=scale / 2 + 1e-7)
    assert frames[1].saliency.shape == (len(rows), 3)


def test_cli_method_all_on_tokens(small_bert_onnx, tmp_path):
    """--method all writes one model per token method (image-only methods are not tried)."""
    out = tmp_path / "m.onnx"
    code = cli.main(["export", str(small_bert_onnx), "-o", str(out), "--input", "input_ids",
                     "--input-shape", f"1,{SEQ}", "--method", "all", "--steps", "4"])  # fmt: skip
    assert code == 0
    written = sorted(p.name for p in tmp_path.glob("m.*.onnx"))
    assert written == [f"m.{m}.onnx" for m in sorted(TOKEN_METHODS)]
