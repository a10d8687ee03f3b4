"""``edgesal compare`` with TFLite saliency models (edgesal's own writer) on either side.

The report's numbers are recomputed here from maps this test computes itself: onnxruntime on the
NCHW ONNX model and ai-edge-litert on the NHWC flatbuffer, fed the same pixels; Spearman by
scipy, SSIM by scikit-image, top-k IoU from a sort. The TFLite map must equal the ONNX map within
1e-4 of its range, the tolerance of tests/converters/test_tflite_export.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from edgesal import metadata, zoo
from edgesal.converters.tflite.convert import to_tflite
from edgesal.errors import ModelLoadError
from edgesal.eval.audit import compare
from edgesal.eval.cli import main
from edgesal.eval.engines import LocalEngine, SerialEngine
from edgesal.export import ExportOptions, export_saliency, save
from tests.eval.models import region_classifier, smooth_images, write_images
from tests.models import nchw_cnn

ROOT = Path(__file__).resolve().parents[2]
METHODS = ["vanilla", "gradxinput"]
SIZE = 16  # nchw_cnn's input; the images are this size, so the crop is the image
TOL = 1e-4
TOP_K = 0.1
LABELS = [f"thing {i}" for i in range(5)]


def _saliency(classes: int = 5, **options) -> onnx.ModelProto:
    model = nchw_cnn(classes=classes)
    metadata.write(model, {"labels": LABELS[:classes]})
    return export_saliency(model, ExportOptions(methods=METHODS, **options))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare_tflite")
    sal = _saliency()
    save(sal, root / "m.sal.onnx")
    (root / "m.sal.tflite").write_bytes(to_tflite(sal))
    write_images(root / "images", smooth_images(4, size=SIZE))
    return root


def _images(root: Path) -> dict[str, np.ndarray]:
    import cv2

    paths = sorted((root / "images").iterdir())
    return {p.name: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths}


def _onnx_maps(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = ["logits", *(f"saliency_{m}" for m in METHODS)]
    logits, *maps = session.run(names, {"image": pixels.transpose(2, 0, 1)[None]})
    return logits[0], [m[0] for m in maps]


def _tflite_maps(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    (image,) = it.get_input_details()
    assert list(image["shape"]) == [1, SIZE, SIZE, 3]  # NHWC
    it.set_tensor(image["index"], pixels[None])
    it.invoke()
    out = {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}
    return out["logits"][0], [out[f"saliency_{m}"][0] for m in METHODS]


def _maps(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    return (_tflite_maps if path.suffix == ".tflite" else _onnx_maps)(path, pixels)


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.min()) / np.ptp(x)


def _top_k_iou(a: np.ndarray, b: np.ndarray) -> float:
    k = int(np.ceil(TOP_K * a.size))
    top_a = set(np.argsort(-a.ravel(), kind="stable")[:k])
    top_b = set(np.argsort(-b.ravel(), kind="stable")[:k])
    return len(top_a & top_b) / len(top_a | top_b)


PAIRS = [("m.sal.onnx", "m.sal.tflite"), ("m.sal.tflite", "m.sal.onnx"), ("m.sal.tflite",) * 2]


@pytest.mark.parametrize("pair", PAIRS, ids=["onnx-tflite", "tflite-onnx", "tflite-tflite"])
def test_report_numbers_match_maps_computed_here(files, tmp_path, pair):
    path_a, path_b = files / pair[0], files / pair[1]
    result = compare(path_a, path_b, _images(files), tmp_path, top_k=TOP_K, engine=SerialEngine())
    assert result["model_a"]["format"] == path_a.suffix[1:]
    assert result["model_b"]["format"] == path_b.suffix[1:]
    assert result["model_b"]["layout"] == ("NHWC" if path_b.suffix == ".tflite" else "NCHW")
    assert result["methods"] == METHODS and result["summary"]["top1_agreement"] == 1.0
    by_name = {entry["name"]: entry for entry in result["images"]}
    for name, rgb in _images(files).items():
        pixels = rgb.astype(np.float32) / 255.0  # no preprocess metadata: [0, 1], RGB
        logits_a, maps_a = _maps(path_a, pixels)
        logits_b, maps_b = _maps(path_b, pixels)
        entry = by_name[name]
        assert entry["class_a"] == entry["class_b"] == int(np.argmax(logits_a))
        assert entry["label_a"] == LABELS[entry["class_a"]] and entry["top1_agree"] is True
        assert int(np.argmax(logits_b)) == entry["class_b"]
        for method, ma, mb in zip(METHODS, maps_a, maps_b, strict=True):
            assert ma.shape == mb.shape == (SIZE, SIZE)
            assert np.abs(ma - mb).max() <= TOL * np.ptp(ma), f"{name} {method}"
            got = entry["methods"][method]
            assert got["spearman"] == pytest.approx(spearmanr(ma.ravel(), mb.ravel())[0], abs=1e-6)
            ssim = structural_similarity(
                _unit(ma), _unit(mb), data_range=1.0, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False,
            )  # fmt: skip
            assert got["ssim"] == pytest.approx(ssim, abs=1e-6)
            assert got["top_k_iou"] == pytest.approx(_top_k_iou(ma, mb), abs=1e-6)
            assert got["spearman"] >= 0.999
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(result["summary"]))
    assert str(path_b) in (tmp_path / "report.html").read_text()


def test_target_input_tflite_explains_the_reference_class(tmp_path):
    """B takes the class as a run-time input (its 'target' input): it explains A's class."""
    a = _saliency()
    b = to_tflite(_saliency(target="input"))
    result = compare(a, b, smooth_images(3, size=SIZE), tmp_path, engine=SerialEngine())
    assert result["summary"]["top1_agreement"] == 1.0
    for method in METHODS:
        assert result["summary"]["methods"][method]["spearman"]["min"] >= 0.999


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_compares_onnx_with_tflite(capsys, files, tmp_path):
    code, out, err = run(
        capsys, "compare", files / "m.sal.onnx", files / "m.sal.tflite", "--images",
        files / "images", "-o", tmp_path, "--workers", "0", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "vanilla: spearman 1.000" in out and "top-1 agreement 1.000" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["model_b"]["format"] == "tflite" and report["model_a"]["format"] == "onnx"


def test_help_mentions_tflite(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = capsys.readouterr().out
    assert ".tflite" in text and "ONNX vs TFLite" in text


@pytest.fixture(scope="module")
def bad(files: Path) -> Path:
    root = files
    (root / "plain.tflite").write_bytes(to_tflite(nchw_cnn()))  # a classifier, no saliency
    data = (root / "m.sal.tflite").read_bytes()
    name = b"\x07\x00\x00\x00edgesal\x00"  # a flatbuffer string: the metadata entry's name
    assert name in data
    (root / "nometa.tflite").write_bytes(data.replace(name, name.replace(b"sal", b"XYZ")))
    (root / "four.sal.tflite").write_bytes(to_tflite(_saliency(classes=4)))
    save(_saliency(classes=4), root / "four.sal.onnx")
    (root / "big.sal.tflite").write_bytes(
        to_tflite(export_saliency(region_classifier(), ExportOptions(method="vanilla")))
    )
    (root / "half.sal.tflite").write_bytes(data[: len(data) // 2])
    (root / "stub.sal.tflite").write_bytes(data[:5])
    return root


BAD = [
    ("plain.tflite", "plain.tflite: model has no saliency output"),
    ("nometa.tflite", "nometa.tflite: no 'edgesal' metadata entry"),
    ("four.sal.tflite", "m.sal.onnx scores 5 classes but {root}/four.sal.tflite scores 4"),
    ("four.sal.onnx", "m.sal.onnx scores 5 classes but {root}/four.sal.onnx scores 4"),
    ("big.sal.tflite", "m.sal.onnx takes (16, 16) images but {root}/big.sal.tflite takes (32, 32)"),
    ("half.sal.tflite", "half.sal.tflite: ai-edge-litert cannot load it as a TFLite model"),
    ("stub.sal.tflite", "stub.sal.tflite: ai-edge-litert cannot load it as a TFLite model"),
]


@pytest.mark.parametrize(("name", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_model_b_is_refused_naming_the_file(capsys, bad, tmp_path, name, message):
    code, _, err = run(
        capsys, "compare", bad / "m.sal.onnx", bad / name, "--images", bad / "images",
        "-o", tmp_path, "--workers", "0", "--no-progress",
    )  # fmt: skip
    assert code == 2
    assert message.format(root=bad) in err


def test_eval_of_a_tflite_model_points_to_compare(capsys, files, tmp_path):
    code, _, err = run(
        capsys, "eval", files / "m.sal.tflite", "--images", files / "images", "-o", tmp_path,
    )  # fmt: skip
    assert code == 2 and f"{files}/m.sal.tflite: a TFLite model; eval reads ONNX" in err
    assert "edgesal compare MODEL.sal.onnx" in err


def test_missing_litert_is_a_clear_error(files, tmp_path, monkeypatch):
    for module in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ModelLoadError, match=r"m\.sal\.tflite: .*pip install 'edgesal\[device-"):
        compare(files / "m.sal.onnx", files / "m.sal.tflite", _images(files), tmp_path)


def test_eval_stays_importable_without_litert():
    """ai-edge-litert is imported when a TFLite model is opened, not by importing edgesal.eval."""
    code = (
        "import sys; sys.modules['ai_edge_litert'] = sys.modules['tflite_runtime'] = None\n"
        "import edgesal.eval.audit, edgesal.eval.cli, edgesal.eval.tflite\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.slow
def test_mobilenet_v2_onnx_vs_tflite(tmp_path):
    """The zoo's MobileNetV2, vanilla gradient, ONNX on onnxruntime vs TFLite on ai-edge-litert,
    on the six zoo photos, through the process-pool engine. Measured (2026-11): Spearman mean
    0.99995 (min 0.99986), SSIM 0.99997, top-10% IoU 0.9988, top-1 agreement 1.0."""
    sal = export_saliency(zoo.build("mobilenet_v2", progress=False), ExportOptions())
    result = compare(sal, to_tflite(sal), zoo.photos(), tmp_path, engine=LocalEngine(2))
    summary = result["summary"]
    vanilla = summary["methods"]["vanilla"]
    print({k: (v["mean"], v["min"]) for k, v in vanilla.items()}, summary["top1_agreement"])
    assert summary["top1_agreement"] == 1.0
    assert vanilla["spearman"]["mean"] >= 0.99 and vanilla["ssim"]["mean"] >= 0.99
    assert result["model_b"]["input"]["shape"] == [1, 224, 224, 3]
    assert result["model_a"]["input"]["shape"] == [1, 3, 224, 224]
