"""``quantize`` and ``edgesal quantize`` end to end on the tiny CNN with a folder of real photos."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from scipy.stats import spearmanr

from edgesal import metadata
from edgesal.errors import InputError
from edgesal.export import ExportOptions, export_saliency
from edgesal.methods import MethodOptions
from edgesal.quant import Budget, QuantOptions, SearchOptions, quantize
from edgesal.quant.cli import register
from edgesal.quant.images import CalibrationWarning, load_split, model_inputs
from edgesal.quant.report import KeptNode
from edgesal.runtimes.contract import Preprocess
from tests.quant.conftest import tiny_classifier

ROOT = Path(__file__).resolve().parents[2]
FAST = dict(augment=1, tune=2, latency_runs=2, search=SearchOptions(blocks=3, max_evaluations=8))


@pytest.fixture(scope="module")
def result(tiny_saliency, photo_folder):
    with pytest.warns(CalibrationWarning, match="resized"):
        return quantize(tiny_saliency["vanilla"], QuantOptions(calib=str(photo_folder), **FAST))


@pytest.fixture(scope="module")
def strict(tiny_saliency, photo_folder):
    """A budget no int8 node meets (Spearman and IoU exactly 1): nodes stay float, profiled."""
    options = QuantOptions(calib=str(photo_folder), budget=Budget(1.0, 1.0), **FAST)
    with pytest.warns(CalibrationWarning, match="resized"):
        return quantize(tiny_saliency["vanilla"], options)


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["logits", "saliency"], {"image": x})


def test_report_numbers_recomputed_from_the_maps(result, tiny_saliency, photo_folder):
    report = result.report
    split = load_split(photo_folder, augment=0)
    pre = Preprocess.from_dict(metadata.read(tiny_saliency["vanilla"])["preprocess"])
    rows = {(r.split, r.image): r for r in report.rows}
    assert {name for split_, name in rows if split_ == "validation"} == {
        s.name for s in split.validation
    }
    for sample, x in zip(split.validation, model_inputs(split.validation, pre), strict=True):
        (fl, fm), (ql, qm) = _run(tiny_saliency["vanilla"], x), _run(result.model, x)
        row = rows[("validation", sample.name)]
        assert row.spearman == pytest.approx(spearmanr(fm.ravel(), qm.ravel()).statistic, abs=1e-9)
        k = int(np.ceil(0.1 * fm.size))
        top_f = set(np.argsort(-fm.ravel(), kind="stable")[:k])
        top_q = set(np.argsort(-qm.ravel(), kind="stable")[:k])
        assert row.top10_iou == pytest.approx(len(top_f & top_q) / len(top_f | top_q))
        assert row.top1_agrees == (int(fl.argmax()) == int(ql.argmax()))


def _saved(report, tmp_path) -> dict:
    path = tmp_path / "r.json"
    report.save_json(path)
    return json.loads(path.read_text())


@pytest.mark.parametrize("which", ["result", "strict"])
def test_report_json_and_text(which, request, tmp_path):
    result = request.getfixturevalue(which)
    data = _saved(result.report, tmp_path)
    assert data["images"]["validation"] and data["images"]["calibration"]
    assert set(data["summary"]) == {"calibration", "validation"}
    assert data["meets_budget"] == result.report.meets_budget
    assert [k["node"] for k in data["kept"]] == result.kept
    for entry in data["kept"]:
        assert set(entry) == set(KeptNode.__dataclass_fields__)
        assert all(isinstance(entry[key], str) for key in ("node", "op_type", "reason"))
        assert entry["region"] in ("forward", "backward") and entry["reason"]
        for key in ("float_ms", "int8_ms", "cost_ms"):
            assert entry[key] is None or isinstance(entry[key], float), (key, entry)
    assert [KeptNode(**k) for k in data["kept"]] == result.report.kept
    text = result.report.format()
    assert "validation" in text and "budget (validation)" in text
    assert f"{len(data['kept'])} kept float" in text


def test_int8_model_carries_metadata_and_decisions(result):
    meta = metadata.read(result.model)
    assert meta["method"] == "vanilla" and meta["quant.format"] == "qdq-int8"
    assert meta["quant.kept_float"] == result.kept
    for kept in result.report.kept:
        assert kept.reason and kept.float_ms is not None


def test_kept_nodes_have_latency_costs_and_reasons(strict, tmp_path):
    """Each float node's latency cost (profiled float kernel time - its int8 kernel time in the
    all-int8 model) is measured, finite, explained, and the same in the JSON and the text."""
    report = strict.report
    assert report.kept and [k.node for k in report.kept] == strict.kept
    assert metadata.read(strict.model)["quant.kept_float"] == strict.kept
    for kept in report.kept:
        assert kept.reason, kept
        for value in (kept.float_ms, kept.int8_ms, kept.cost_ms):
            assert isinstance(value, float) and math.isfinite(value), kept
        assert kept.float_ms >= 0.0 and kept.int8_ms >= 0.0
        assert kept.cost_ms == pytest.approx(kept.float_ms - kept.int8_ms)
    convs = [k for k in report.kept if k.op_type == "Conv"]
    assert {k.region for k in convs} == {"forward", "backward"}
    for kept in convs:  # a Conv runs a kernel in both models, fused or not: never 0 ms
        assert kept.float_ms > 0.0 and kept.int8_ms > 0.0, kept

    entries = _saved(report, tmp_path)["kept"]
    lines = report.format().splitlines()
    total = sum(e["cost_ms"] for e in entries)
    header = lines.index(f"latency cost of the float nodes (profiled, vs int8): {total:+.2f} ms")
    costliest = sorted(entries, key=lambda e: -e["cost_ms"])[:20]
    shown = [
        f"  {e['node']} ({e['op_type']}, {e['region']}): {e['reason']} [{e['cost_ms']:+.3f} ms]"
        for e in costliest
    ]
    assert lines[header + 1 : header + 1 + len(shown)] == shown
    if len(entries) > len(shown):
        more = f"  ... {len(entries) - len(shown)} more float nodes in the JSON report"
        assert lines[header + 1 + len(shown)] == more


@pytest.mark.parametrize(
    ("method", "params", "degree"),
    [
        pytest.param("vanilla", MethodOptions(), 1, id="vanilla"),
        pytest.param("gradcam", MethodOptions(), 1, id="gradcam"),
        pytest.param("smoothgrad", MethodOptions(samples=4, squared=True), 2, id="smoothgrad2"),
    ],
)
def test_seed_rescale_is_undone_in_the_int8_map(photo_folder, method, params, degree):
    """Unnormalized maps keep their scale, so the int8 map must come out at the float map's
    scale: a wrong undo factor (k^-degree after the seed was multiplied by k = 2^n) is off by
    a factor of 2 or more."""
    export = ExportOptions(method=method, reduce="none", normalize="none", params=params)
    model = export_saliency(tiny_classifier(), export)
    options = QuantOptions(calib=str(photo_folder), **FAST | {"latency_runs": 0})
    with pytest.warns(CalibrationWarning, match="resized"):
        result = quantize(model, options)
        samples = result.samples["calibration"] + result.samples["validation"]
        xs = model_inputs(samples, result.preprocess)
    scale = result.report.seed_scale
    assert scale["factor"] >= 4.0 and scale["degree"] == degree
    assert scale["undo"] == "output multiply"
    ratios, float_maps, int8_maps = [], [], []
    for x in xs:
        (fl, fm), (ql, qm) = _run(model, x), _run(result.model, x)
        if fl.argmax() != ql.argmax():
            continue  # the int8 map explains another class
        ratios.append(np.abs(qm).max() / np.abs(fm).max())
        float_maps.append(fm.ravel().astype(np.float64))
        int8_maps.append(qm.ravel().astype(np.float64))
    assert len(ratios) >= len(xs) - 1
    assert np.median(ratios) == pytest.approx(1.0, abs=0.05)
    f, q = np.concatenate(float_maps), np.concatenate(int8_maps)
    assert f @ q / (f @ f) == pytest.approx(1.0, abs=0.1)  # least-squares scale of q on f


def test_not_a_saliency_model(photo_folder):
    with pytest.raises(InputError, match="not an edgesal saliency model"):
        quantize(tiny_classifier(), QuantOptions(calib=str(photo_folder), **FAST))


def test_model_without_preprocessing_metadata(tiny_saliency, photo_folder):
    model = onnx.ModelProto()
    model.CopyFrom(tiny_saliency["vanilla"])
    kept = [p for p in model.metadata_props if p.key != "edgesal.preprocess"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    with pytest.raises(InputError, match="no edgesal.preprocess metadata"):
        quantize(model, QuantOptions(calib=str(photo_folder), **FAST))


def _parser():
    parser = argparse.ArgumentParser(prog="edgesal")
    register(parser.add_subparsers())
    return parser


def test_cli_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["quantize", "--help"])
    text = capsys.readouterr().out
    for flag in ("--calib", "--max-map-error", "--format", "--grad-range", "--report", "--tune"):
        assert flag in text


def test_cli_writes_model_and_report(tiny_saliency, photo_folder, tmp_path, capsys):
    source = tmp_path / "tiny.sal.onnx"
    onnx.save(tiny_saliency["gradcam"], str(source))
    out = tmp_path / "tiny.int8.onnx"
    args = _parser().parse_args(
        ["quantize", str(source), "--calib", str(photo_folder), "-o", str(out),
         "--augment", "1", "--tune", "2", "--blocks", "3", "--max-evals", "6",
         "--latency-runs", "0"]
    )  # fmt: skip
    status = args.func(args)
    report = json.loads((tmp_path / "tiny.int8.onnx.report.json").read_text())
    assert status == (0 if report["meets_budget"] else 1)
    assert report["sizes"]["int8"] == out.stat().st_size
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    captured = capsys.readouterr()
    assert "image(s) are not 16x16" in captured.err and "wrote" in captured.out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-map-error", "lots"], "--max-map-error"),
        (["--tune", "0"], "--tune 0"),
    ],
)
def test_cli_bad_flags(tiny_saliency, photo_folder, tmp_path, extra, message):
    source = tmp_path / "m.onnx"
    onnx.save(tiny_saliency["vanilla"], str(source))
    args = _parser().parse_args(
        ["quantize", str(source), "--calib", str(photo_folder), "-o", str(tmp_path / "o.onnx")]
        + extra
    )
    with pytest.raises(InputError, match=message):
        args.func(args)


def test_cli_parser_builds_without_onnx():
    """Device installs have no onnx: building the parser must not import it."""
    code = (
        "import sys, argparse\n"
        "for name in ('onnx', 'onnxruntime', 'cv2'): sys.modules[name] = None\n"
        "from edgesal.quant.cli import register\n"
        "p = argparse.ArgumentParser(); register(p.add_subparsers())\n"
        "a = p.parse_args(['quantize', 'm.onnx', '--calib', 'imgs', '-o', 'o.onnx'])\n"
        "assert a.tune == 6 and a.max_map_error == '0.1'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_cli_without_flags_asks_for_the_default_options(monkeypatch):
    """The parser's defaults come from QuantOptions itself: no flag, no difference."""
    import argparse

    from edgesal.quant import cli

    class Asked(Exception):
        pass

    def record(model, options):
        raise Asked(options)

    monkeypatch.setattr("edgesal.quant.pipeline.quantize", record)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["quantize", "m.onnx", "--calib", "builtin", "-o", "o.onnx"])
    with pytest.raises(Asked) as asked:
        args.func(args)
    got, want = asked.value.args[0], QuantOptions()
    got.progress = want.progress = None
    assert got == want


def test_quantize_prints_no_onnxruntime_warnings(tiny_saliency, photo_folder, capfd):
    """The internal sessions (calibration, constant evaluation) read graphs with initializers
    they do not use; onnxruntime's one warning per initializer must not reach the user."""
    options = QuantOptions(calib=str(photo_folder), **FAST | {"latency_runs": 0})
    with pytest.warns(CalibrationWarning):
        quantize(tiny_saliency["integrated"], options)
    assert "onnxruntime" not in capfd.readouterr().err
