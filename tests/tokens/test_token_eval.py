"""Deletion / insertion over tokens and the weight-randomization check on token models; the
``edgesal eval --texts`` report (report.json, report.md, curves.png, report.html)."""

from __future__ import annotations

import html
import json
import re
from argparse import Namespace

import numpy as np
import onnx
import pytest

from edgesal import cli, metadata
from edgesal.errors import InputError
from edgesal.eval.sanity import parametric_layers
from edgesal.eval.texts import sanity_section, sanity_source
from edgesal.eval.tokens import (
    LAST_ATTENTION,
    RANDOM,
    evaluate_texts,
    markdown,
    sanity_cascade,
    token_curves,
    token_export_options,
    token_forward,
)
from edgesal.export import ExportOptions, save
from edgesal.options import MethodOptions
from edgesal.runtimes.text import TextExplainer, TokenExplanation
from edgesal.tokens.export import TokenOptions, export_token_saliency
from tests.tokens.conftest import SEQ
from tests.tokens.test_text import WORDS, _tokenizer

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


def _run_eval(model, texts, tokenizer, out, *flags) -> int:
    args = ["eval", str(model), "--texts", str(texts), "--tokenizer", str(tokenizer), "-o"]
    return cli.main([*args, str(out), "--baseline-token", "3", "--no-progress", *flags])


@pytest.fixture(scope="module")
def cli_model(small_bert_onnx, tmp_path_factory):
    """A token model as a user exports it (target argmax, IG from token 3, labels with HTML
    characters), its export options, a tokenizer whose vocabulary has the token '&<' and a file
    of texts."""
    folder = tmp_path_factory.mktemp("cli")
    options = ExportOptions(
        methods=["vanilla", "integrated"], input="input_ids", input_shape=(1, SEQ),
        reduce="l2", labels=["<i>a</i>", "b & c", "c"], params=MethodOptions(steps=4),
    )  # fmt: skip
    tokens = TokenOptions(attention=True, baseline_token=3, special_tokens=SPECIAL)
    model = folder / "m.sal.onnx"
    save(export_token_saliency(small_bert_onnx, options, tokens), model)
    tokenizer = _tokenizer(folder / "tokenizer.json", [*WORDS[:-1], "&<"])
    texts = folder / "texts.txt"
    texts.write_text("\n".join(["w1 &< w3 <b>w4</b>", *TEXTS]) + "\n")
    return model, options, tokens, tokenizer, texts


def test_reexport_from_the_saliency_model_equals_the_model(cli_model, small_bert_onnx):
    """The network pruned out of the saliency model, exported again with the flags its metadata
    records, gives the model's maps; only the target became a run-time input."""
    model, options, tokens, tokenizer, _ = cli_model
    saved = onnx.load(str(model))
    forward = token_forward(saved, "m")
    assert [o.name for o in forward.graph.output] == ["scores"]
    got, got_tokens = token_export_options(saved)
    assert got.method_names() == options.method_names() and got.target == "input"
    assert (got.reduce, got.input, got.input_shape, got.labels) == ("l2", "input_ids", (1, SEQ),
                                                                     options.labels)  # fmt: skip
    assert got_tokens == TokenOptions(
        attention=True, baseline_token=3, special_tokens=SPECIAL, mask_input="attention_mask"
    )
    path = model.parent / "again.onnx"
    save(export_token_saliency(forward, got, got_tokens), path)
    original, again = TextExplainer(model, tokenizer), TextExplainer(path, tokenizer)
    for text in TEXTS:
        a, b = original.explain(text), again.explain(text)
        assert a.target == b.target
        for name in a.maps:
            np.testing.assert_allclose(b.maps[name], a.maps[name], atol=1e-6)
    with pytest.raises(InputError, match="not a token saliency model"):
        token_forward(onnx.load(str(small_bert_onnx)), "bert.onnx")


@pytest.fixture(scope="module")
def cli_report(cli_model, tmp_path_factory):
    """``edgesal eval --texts --sanity-texts 2`` run once: its folder and report.json."""
    model, _, _, tokenizer, texts = cli_model
    out = tmp_path_factory.mktemp("report")
    flags = ("--sanity-texts", "2", "--sanity-steps", "1,all")
    assert _run_eval(model, texts, tokenizer, out, *flags) == 0
    return out, json.loads((out / "report.json").read_text())


def test_sanity_flag_reports_what_sanity_cascade_returns(cli_model, cli_report, small_bert_onnx):
    """The flag's Spearman values equal sanity_cascade on the original ONNX file exported with
    the user's own options (run-time target): the pruned network and the flags read back from
    the metadata change nothing."""
    _, options, tokens, tokenizer, texts = cli_model
    out, report = cli_report
    folder = out / "direct"
    folder.mkdir()
    counter = iter(range(100))
    run_time = ExportOptions(**{**options.__dict__, "target": "input"})

    def export(forward: onnx.ModelProto) -> TextExplainer:
        path = folder / f"m{next(counter)}.onnx"
        save(export_token_saliency(forward, run_time, tokens), path)
        return TextExplainer(path, tokenizer)

    lines = texts.read_text().splitlines()[:2]
    direct = sanity_cascade(onnx.load(str(small_bert_onnx)), export, lines, SPECIAL, steps="1,all")
    sanity = report["sanity"]
    assert sanity["texts"] == lines and sanity["layers"] == max(direct)
    assert [s["layers"] for s in sanity["steps"]] == sorted(direct)
    for step in sanity["steps"]:
        assert step["spearman"] == pytest.approx(direct[step["layers"]], abs=1e-9)
    final = direct[max(direct)]
    assert set(final) == {"vanilla", "integrated", "attention_rollout", "attention_gradient",
                          LAST_ATTENTION}  # fmt: skip
    for name, v in sanity["verdicts"].items():
        assert v["final_spearman"] == pytest.approx(final[name], abs=1e-9)
        assert v["passed"] == (final[name] < 0.5)
    assert (
        f"| vanilla | {report['rankings']['vanilla']['deletion_auc']:.3f} |"
        in (out / "report.md").read_text()
    )
    assert f"{final['vanilla']:.2f} |" in (out / "report.md").read_text()


def test_report_html_has_every_ranking_the_plot_and_escapes_text(cli_report):
    out, report = cli_report
    page = (out / "report.html").read_text(encoding="utf-8")
    rankings = page.split("<h2>Which rankings move the output</h2>")[1].split("<h2>")[0]
    rows = re.findall(r"<tr><td class=l>(.*?)</td>", rankings)
    names = sorted(report["rankings"], key=lambda n: report["rankings"][n]["deletion_auc"])
    assert rows == [f"{n} (control)" if n == RANDOM else html.escape(n) for n in names]
    assert len(names) == 6 and report["sanity"]["verdicts"].keys() == set(names) - {RANDOM}
    for name, entry in report["rankings"].items():
        row = rankings.split(f"<td class=l>{html.escape(name)}")[1].split("</tr>")[0]
        assert f"<td>{entry['deletion_auc']:.3f}</td><td>{entry['insertion_auc']:.3f}</td>" in row
        rho = report["sanity"]["verdicts"].get(name, {}).get("final_spearman")
        assert ("–" if rho is None else f"<td>{rho:.3f}</td>") in row
    steps = page.split("<h2>Weight randomization</h2>")[1].split("<h2>")[0]
    assert [f"top {s['layers']}" for s in report["sanity"]["steps"]] == re.findall(
        r"<th>(top \d+)</th>", steps
    )
    assert page.count('src="data:image/png;base64,') == 1 and "http" not in page.lower()
    assert "<script" not in page.lower()
    # text, token and label with HTML characters: escaped, never raw
    assert "<h3>w1 &amp;&lt; w3 &lt;b&gt;w4&lt;/b&gt;</h3>" in page
    assert "<td class=l>&amp;&lt;</td>" in page
    assert "&<" not in page and "<b>w4" not in page and "<i>a</i>" not in page
    examples = page.split("<h2>Example texts</h2>")[1]
    assert examples.count("<h3>") == 4  # every text of the file (fewer than 5)
    header = re.search(r"<tr><th class=l>token</th>(.*?)</tr>", examples).group(1)
    shown = re.findall(r"<th>(.*?)</th>", header)
    assert shown == [html.escape(n) for n in ["vanilla", "integrated", "attention_rollout",
                                              "attention_gradient", LAST_ATTENTION]]  # fmt: skip


def test_sanity_texts_errors_name_the_flag(cli_model, tmp_path, capsys):
    model, _, _, tokenizer, texts = cli_model
    assert _run_eval(model, texts, tokenizer, tmp_path, "--sanity-texts", "-1") == 2
    assert "--sanity-texts -1: must be >= 0" in capsys.readouterr().err
    code = cli.main(["eval", str(model), "--images", str(tmp_path), "--sanity-texts", "2",
                     "-o", str(tmp_path)])  # fmt: skip
    assert code == 2 and "--sanity-texts is for --texts" in capsys.readouterr().err
    assert _run_eval(model, texts, tmp_path / "none.json", tmp_path) == 2
    assert re.search(r"error: --tokenizer \S+none\.json: no such file", capsys.readouterr().err)


def test_sanity_errors_name_the_flag_and_the_cause(cli_model, tmp_path):
    """Refused before any work: a .tflite model (the check re-exports the ONNX network), a bad
    --sanity-steps. A model whose recorded flags cannot be exported again says so, naming
    --sanity-texts and the export's own complaint."""
    model, _, _, tokenizer, _ = cli_model
    args = Namespace(model="m.sal.tflite", tokenizer=str(tokenizer), sanity_texts=2, seed=0)
    args.sanity_steps, args.no_progress, args.sanity_threshold = "log", True, 0.5
    with pytest.raises(InputError, match=r"--sanity-texts 2: m\.sal\.tflite is not an ONNX"):
        sanity_source(args)
    args.model, args.sanity_threshold = str(model), 1.5
    with pytest.raises(InputError, match=r"--sanity-threshold 1.5: must be in \(0, 1\]"):
        sanity_source(args)
    args.sanity_threshold, args.sanity_steps = 0.5, "0,all"
    with pytest.raises(InputError, match=r"--sanity-steps 0,all: counts must be in 1\.\.18"):
        sanity_source(args)
    saved = onnx.load(str(model))
    metadata.write(saved, {"postprocess": {"reduce": "sideways", "normalize": "max"}})
    args.model, args.sanity_steps = str(tmp_path / "broken.sal.onnx"), "log"
    save(saved, args.model)
    with pytest.raises(InputError, match=r"--sanity-texts 2: .*again: --reduce sideways"):
        sanity_section(sanity_source(args), TEXTS, SPECIAL, args)
