"""Every saliency method on both zoo models, exported to TFLite and run on ai-edge-litert and on
tflite-runtime 2.14 (a second venv with numpy < 2), against the ONNX export on onnxruntime.

Equality is checked synced (edgesal.converters.tflite.verify): the TFLite model also returns the
tensors
its gradient decisions read, onnxruntime re-runs the ONNX model from those, and every output must
agree within 1e-4 of its range; the forward tensors themselves must agree within 1e-4 too. The
shipped model (no extra outputs) must return what the probed one returns.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgesal import metadata, zoo
from edgesal.converters.tflite.convert import to_tflite
from edgesal.converters.tflite.verify import (
    Comparison,
    compare,
    probed,
    relative_error,
    tflite_feeds,
)
from edgesal.export import ExportOptions, export_saliency
from edgesal.methods import METHODS
from edgesal.runtimes.backends.tflite_meta import read_metadata
from edgesal.runtimes.contract import Preprocess, image_tensor
from tests.converters.tflite_harness import interpreter, operator_names

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MODELS = ["mobilenet_v2", "efficientnet_lite0"]
PHOTOS = ["chelsea", "coffee"]
TOL = 1e-4
KEYS = [(m, method) for m in MODELS for method in METHODS]


@dataclass
class Exported:
    onnx: onnx.ModelProto  # the ONNX saliency export
    probe: onnx.ModelProto  # the same with decision tensors as extra outputs
    decisions: list[str]
    shipped: bytes  # to_tflite(onnx)
    probed: bytes  # to_tflite(probe)
    feeds: dict[str, dict[str, np.ndarray]]  # photo -> ONNX feeds


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[tuple[str, str], Exported]:
    folder = tmp_path_factory.mktemp("tflite_exports")
    result = {}
    for name in MODELS:
        model = zoo.build(name, progress=False)
        pre = Preprocess.from_dict(metadata.read(model)["preprocess"])
        images = zoo.photos()
        feeds = {p: {"image": image_tensor(images[p], pre)} for p in PHOTOS}
        for method in METHODS:
            sal = export_saliency(model, ExportOptions(method=method))
            probe, decisions = probed(sal)
            item = Exported(sal, probe, decisions, to_tflite(sal), to_tflite(probe), feeds)
            (folder / f"{name}.{method}.tflite").write_bytes(item.shipped)
            (folder / f"{name}.{method}.probe.tflite").write_bytes(item.probed)
            result[(name, method)] = item
    return result


def _check(item: Exported, photo: str, probed_out: dict, shipped_out: dict) -> Comparison:
    result = compare(item.probe, item.decisions, item.feeds[photo], probed_out)
    for name, err in {**result.synced, **result.forward}.items():
        assert err <= TOL, f"{photo}: '{name}' differs from onnxruntime by {err:.2e} of its range"
    # Directly, without syncing: the scores always, and the map too when no gate or argmax
    # decided differently (a flip of one ReLU6 gate out of millions moves a vanilla map by up to
    # a few percent, docs/converters.md).
    direct = result.raw if result.flipped == 0 else {"logits": result.raw["logits"]}
    for name, err in direct.items():
        assert err <= TOL, f"{photo}: '{name}' differs directly by {err:.2e} of its range"
    for name in (o.name for o in item.onnx.graph.output):
        err = relative_error(shipped_out[name], probed_out[name])
        assert err <= 1e-5, f"{photo}: shipped model's '{name}' differs from the probed one"
    return result


@pytest.mark.parametrize("key", KEYS, ids=[f"{m}-{k}" for m, k in KEYS])
def test_flatbuffer_contract(exports, key):
    """Builtins only, NHWC image input, exactly one signature whose output keys are the ONNX
    output names, metadata."""
    item = exports[key]
    ops = operator_names(item.shipped)
    assert "CUSTOM" not in ops and not any(op.startswith("FLEX") for op in ops)
    it = interpreter(item.shipped)
    signatures = it.get_signature_list()
    assert list(signatures) == ["serving_default"], f"one signature expected: {list(signatures)}"
    signature = signatures["serving_default"]
    assert signature["outputs"] == sorted(o.name for o in item.onnx.graph.output)
    assert [d["name"] for d in it.get_output_details()] == [o.name for o in item.onnx.graph.output]
    (image,) = it.get_input_details()
    assert image["name"] == "image" and list(image["shape"]) == [1, 224, 224, 3]
    meta = read_metadata(item.shipped)
    onnx_meta = {p.key: p.value for p in item.onnx.metadata_props}
    assert (
        meta["edgesal.layout"] == "NHWC"
        and json.loads(meta["edgesal.preprocess"])["layout"] == "NHWC"
    )
    same = {k: v for k, v in onnx_meta.items() if k not in ("edgesal.layout", "edgesal.preprocess")}
    assert {k: meta[k] for k in same} == same


@pytest.mark.parametrize("key", KEYS, ids=[f"{m}-{k}" for m, k in KEYS])
def test_matches_onnx_on_ai_edge_litert(exports, key):
    item = exports[key]
    probe_it, shipped_it = interpreter(item.probed, 2), interpreter(item.shipped, 2)
    for it in (probe_it, shipped_it):
        ops = [op["op_name"] for op in it._get_ops_details()]
        assert ops.count("DELEGATE") >= 1, "XNNPACK did not take any part of the graph"
    for photo in PHOTOS:
        feeds = tflite_feeds(probe_it.get_input_details(), item.feeds[photo])
        probed_out = probe_it.get_signature_runner()(**feeds)
        shipped_out = shipped_it.get_signature_runner()(**feeds)
        result = _check(item, photo, probed_out, shipped_out)
        print(f"{key} {photo}: synced {result.synced} raw {result.raw} flips {result.flipped}")


def test_matches_onnx_on_tflite_runtime(exports, runtime_python, tmp_path):
    jobs = []
    for (name, method), item in exports.items():
        for photo in PHOTOS:
            feeds = tmp_path / f"{name}.{photo}.feeds.npz"
            np.savez(feeds, **item.feeds[photo])
            for kind, data in (("probe", item.probed), ("shipped", item.shipped)):
                model = tmp_path / f"{name}.{method}.{kind}.tflite"
                model.write_bytes(data)
                out = tmp_path / f"{name}.{method}.{kind}.{photo}.out.npz"
                jobs.append({"model": str(model), "feeds": str(feeds), "out": str(out)})
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run(
        [
            str(runtime_python),
            str(Path(__file__).with_name("tflite_runtime_worker.py")),
            str(tmp_path / "jobs.json"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reports = json.loads(done.stdout.strip().splitlines()[-1])
    for job, report in zip(jobs, reports, strict=True):
        assert report["backend"] == "tflite-runtime/XNNPACK" and report["numpy"].startswith("1.")
        assert report["delegates"] >= 1, f"{job['model']}: XNNPACK did not take any part"
        assert report["layout"] == "NHWC" and report["input"] == "image"
    for (name, method), item in exports.items():
        for photo in PHOTOS:
            stem = tmp_path / f"{name}.{method}"
            probed_out = dict(np.load(f"{stem}.probe.{photo}.out.npz"))
            shipped_out = dict(np.load(f"{stem}.shipped.{photo}.out.npz"))
            _check(item, photo, probed_out, shipped_out)


@pytest.mark.parametrize(
    "options, windows",
    [
        (ExportOptions(roi=(40, 40, 168, 168)), [None]),
        (ExportOptions(roi_size=(96, 96)), [[[0, 0]], [[70, 150]], [[200, 10]]]),  # last clamped
    ],
    ids=["fixed-roi", "runtime-roi"],
)
def test_region_of_interest_exports(exports, options, windows):
    """Saliency of a window only (docs/roi.md): fixed, or placed at run time by an int64 input."""
    item = exports[("mobilenet_v2", "vanilla")]
    model = zoo.build("mobilenet_v2", progress=False)
    probe, decisions = probed(export_saliency(model, options))
    data = to_tflite(probe)
    assert "CUSTOM" not in operator_names(data)
    it = interpreter(data, 2)
    for window in windows:
        feeds = dict(item.feeds["chelsea"])
        if window is not None:
            feeds["roi"] = np.asarray(window, np.int64)
        out = it.get_signature_runner()(**tflite_feeds(it.get_input_details(), feeds))
        result = compare(probe, decisions, feeds, out)
        for name, err in {**result.synced, **result.forward}.items():
            assert err <= TOL, f"window {window}: '{name}' differs by {err:.2e} of its range"


def test_uint8_image_input():
    """A zoo model that takes the uint8 HWC crop and normalizes in-graph keeps that input."""
    model = zoo.build("mobilenet_v2", input_kind="uint8-hwc", progress=False)
    sal = export_saliency(model, ExportOptions(method="vanilla"))
    shipped = to_tflite(sal)
    assert "TRANSPOSE" not in operator_names(shipped)
    probe, decisions = probed(sal)
    it = interpreter(to_tflite(probe), 2)
    (image,) = it.get_input_details()
    assert list(image["shape"]) == [1, 224, 224, 3] and image["dtype"] == np.uint8
    assert json.loads(read_metadata(shipped)["edgesal.preprocess"])["in_graph"] is True
    photo = zoo.photos()["chelsea"]
    feeds = {"image": np.ascontiguousarray(photo[38:262, 100:324][None])}
    result = compare(probe, decisions, feeds, it.get_signature_runner()(image=feeds["image"]))
    assert max({**result.synced, **result.forward}.values()) <= TOL
