"""The model contract, both backends, graph pruning and bad models."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgesal.runtimes.backends import BackendOptions, load_backend
from edgesal.runtimes.backends.onnx_prune import prune
from edgesal.runtimes.contract import Preprocess, build_contract, decode, encode
from edgesal.runtimes.errors import ModelError
from edgesal.runtimes.model import MethodChain, probabilities
from tests.runtimes import synthetic, synthetic_tflite


def frame_tensor(variant, index: int = 0):
    return variant.preprocessor(synthetic.colour_frames(10)[index])


def test_contract_reads_metadata(models):
    chain = MethodChain.load([str(models["vanilla"])])
    contract = chain[0].contract
    assert contract.input == "image" and contract.scores == "logits"
    assert contract.saliency == {"vanilla": "saliency"}
    assert contract.preprocess.size == (64, 64) and contract.layout == "NCHW"
    assert contract.labels[0] == "red thing"


def test_red_frame_is_class_zero_with_map_on_the_square(models):
    variant = MethodChain.load([str(models["vanilla"])])[0]
    tensor, crop, region = frame_tensor(variant)
    inf = variant.run(tensor, None)
    assert inf.top1 == 0 and inf.target == 0
    assert inf.saliency.shape == (64, 64) and 0.99 < inf.saliency.max() <= 1.0
    red = crop[..., 0] > 150  # RGB crop: the red square
    assert inf.saliency[red].mean() > 5 * inf.saliency[~red].mean()


def test_multi_output_model_gives_one_variant_per_method(models):
    chain = MethodChain.load([str(models["multi"])])
    assert [v.method for v in chain.variants] == ["integrated", "vanilla", "gradcam"]
    chosen = MethodChain.load([str(models["multi"])], methods=["gradcam", "vanilla"])
    assert [v.method for v in chosen.variants] == ["gradcam", "vanilla"]
    with pytest.raises(ModelError, match="--methods"):
        MethodChain.load([str(models["multi"])], methods=["smoothgrad"])


def test_fallback_list_comma_and_folder(models, tmp_path):
    chain = MethodChain.load([f"{models['vanilla']},{models['multi']}"])
    assert len(chain) == 4
    folder = tmp_path / "set"
    folder.mkdir()
    synthetic.build(folder / "a_first.onnx")
    synthetic.build(folder / "b_second.onnx", methods=("x", "y"))
    assert [v.method for v in MethodChain.load([str(folder)]).variants] == ["vanilla", "x", "y"]


def test_target_input_is_fed(models):
    variant = MethodChain.load([str(models["target"])])[0]
    tensor, crop, _ = frame_tensor(variant)
    red, green = variant.run(tensor, 0), variant.run(tensor, 1)
    assert red.target == 0 and green.target == 1
    assert not np.allclose(red.saliency, green.saliency)


def test_uint8_in_graph_input(models):
    variant = MethodChain.load([str(models["uint8"])])[0]
    tensor, _, _ = frame_tensor(variant)
    assert tensor.dtype == np.uint8 and tensor.shape == (1, 64, 64, 3)
    assert variant.run(tensor, None).top1 == 0


def test_prediction_only_run_uses_a_pruned_graph(models):
    raw = models["multi"].read_bytes()
    pruned = prune(raw, ["logits"])
    assert pruned is not None and len(pruned) < len(raw)
    variant = MethodChain.load([str(models["multi"])])[0]
    tensor, _, _ = frame_tensor(variant)
    full, fast = variant.run(tensor, None), variant.run(tensor, None, want_map=False)
    assert fast.saliency is None
    np.testing.assert_allclose(full.probs, fast.probs, rtol=1e-6)
    sub = variant.backend.subset(["logits"])
    assert sub.pruned and sub.outputs == ["logits"]
    one = variant.backend.subset(["logits", "saliency_vanilla"])
    assert one.outputs == ["logits", "saliency_vanilla"]


def test_model_without_saliency_output_is_refused(models):
    with pytest.raises(ModelError, match="no saliency output"):
        MethodChain.load([str(models["nosaliency"])])


def test_wrong_input_size_is_refused(models):
    with pytest.raises(ModelError, match="--input-size"):
        MethodChain.load([str(models["vanilla"])], overrides={"size": (32, 32)})


def test_missing_and_unknown_model_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_backend(tmp_path / "absent.onnx")
    odd = tmp_path / "model.pt"
    odd.write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown model format"):
        load_backend(odd)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="broken.onnx"):
        load_backend(broken)


def test_device_choice_falls_back_to_cpu_and_says_so(models, caplog):
    backend = load_backend(models["vanilla"], BackendOptions(threads=1, device="cuda"))
    assert backend.name == "onnxruntime/CPUExecutionProvider"
    assert "CUDAExecutionProvider not in this onnxruntime build" in caplog.text


def test_metadata_names_missing_scores_output():
    with pytest.raises(ModelError, match="scores output 'probs'"):
        build_contract(
            "m.onnx",
            {"edgesal.outputs": json.dumps({"scores": "probs"})},
            {"image": ((1, 3, 8, 8), "float32")},
            ["logits", "saliency"],
        )


def test_probabilities_passthrough_and_softmax():
    np.testing.assert_allclose(probabilities(np.array([0.2, 0.8])), [0.2, 0.8])
    p = probabilities(np.array([1.0, 2.0, 3.0]))
    assert abs(p.sum() - 1) < 1e-9 and p.argmax() == 2


def test_litert_backend_reads_tflite_metadata_and_runs(tmp_path):
    pytest.importorskip("ai_edge_litert", reason="LiteRT backend needs ai-edge-litert installed")
    path = synthetic_tflite.build(tmp_path / "m.tflite", size=32)
    variant = MethodChain.load([str(path)])[0]
    assert variant.backend.name.startswith("ai-edge-litert")
    assert variant.contract.layout == "NHWC" and variant.contract.labels[0] == "red"
    tensor, crop, _ = frame_tensor(variant)
    assert tensor.shape == (1, 32, 32, 3)
    inf = variant.run(tensor, None)
    assert inf.top1 == 0 and inf.saliency.shape == (32, 32)
    expected = np.abs(tensor[0]).max(axis=-1)
    np.testing.assert_allclose(inf.saliency, expected, rtol=1e-6)


def test_litert_backend_gives_each_concurrent_run_its_own_interpreter(tmp_path):
    pytest.importorskip("ai_edge_litert", reason="LiteRT backend needs ai-edge-litert installed")
    path = synthetic_tflite.build(tmp_path / "m.tflite", size=32)
    backend = load_backend(path, BackendOptions(threads=1))
    feed = next(iter(backend.inputs))
    images = [np.random.default_rng(i).random((1, 32, 32, 3), np.float32) for i in range(4)]
    expected = [np.abs(x[0]).max(axis=-1) for x in images]
    for x, want in zip(images, expected, strict=True):
        np.testing.assert_allclose(backend.run(["saliency"], {feed: x})[0][0], want, rtol=1e-6)
    assert backend.interpreters == 1  # one caller at a time keeps one interpreter
    busy = backend._acquire()  # another worker's run in flight
    np.testing.assert_allclose(backend.run(["saliency"], {feed: images[1]})[0][0], expected[1])
    assert backend.interpreters == 2
    backend._release(busy)
    start = threading.Barrier(4)

    def call(i: int) -> np.ndarray:
        start.wait()
        return backend.run(["saliency"], {feed: images[i]})[0][0]

    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            for got, want in zip(pool.map(call, range(4)), expected, strict=True):
                np.testing.assert_allclose(got, want, rtol=1e-6)
    assert 2 <= backend.interpreters <= 4  # never more than runs in flight


def test_text_keys_stay_strings_and_json_keys_decode():
    """A text key is never JSON-decoded: an input named "0" stays the string "0"."""
    props = {
        "edgesal.input": "0",
        "edgesal.method": "1",
        "edgesal.labels": '["a", "b"]',
        "edgesal.params": "not json",
        "other.key": "ignored",
    }
    assert decode(props) == {
        "input": "0",
        "method": "1",
        "labels": ["a", "b"],
        "params": "not json",
    }
    assert decode(encode({"input": "0", "labels": ["a"], "roi": {"window": [4, 4]}})) == {
        "input": "0",
        "labels": ["a"],
        "roi": {"window": [4, 4]},
    }
    with pytest.raises(ModelError, match="edgesal.layout: expected a string"):
        encode({"layout": 3})
    with pytest.raises(ModelError, match="edgesal.colour: not a known key; add a Key line"):
        encode({"colour": "RGB"})


def test_preprocess_round_trip_and_checks():
    pre = Preprocess(size=[8, 6], mean=[0.5], std=[0.25], color="BGR")
    assert pre.size == (8, 6) and Preprocess.from_json(pre.to_json()) == pre
    for field, value, message in [
        ("std", [0.0, 1.0, 1.0], "m.onnx: edgesal.preprocess std 0.0,1.0,1.0: every value"),
        ("color", "YUV", "color YUV: choose one of RGB, BGR"),
        ("size", [0, 4], r"size \[0, 4\]: expected two sizes > 0"),
        ("layout", "NCW", "layout NCW: choose NCHW or NHWC"),
        ("pixel_scale", "x", "not a number"),
    ]:
        with pytest.raises(ModelError, match=message):
            build_contract(
                "m.onnx",
                {"edgesal.preprocess": json.dumps({field: value})},
                {"image": ((1, 3, 8, 6), "float32")},
                ["logits", "saliency"],
            )


@pytest.mark.parametrize(
    ("shape", "layout"),
    [
        ((1, 3, 8, 8), "NCHW"),
        ((1, 8, 8, 3), "NHWC"),
        ((1, 8, 8, 1), "NHWC"),
        ((1, 5, 6, 7), "NCHW"),
    ],
)
def test_layout_guess_and_size_from_the_static_shape(shape, layout):
    contract = build_contract("m.onnx", {}, {"image": (shape, "float32")}, ["logits", "saliency"])
    assert contract.layout == layout and contract.shape == shape
    assert contract.preprocess.size == (shape[2:4] if layout == "NCHW" else shape[1:3])
    sized = build_contract(
        "m.onnx",
        {"edgesal.preprocess": json.dumps({"size": [4, 4]})},
        {"image": (shape, "float32")},
        ["logits", "saliency"],
    )
    with pytest.raises(ModelError, match="preprocessing size is \\[4, 4\\]"):
        sized.check_input_size("m.onnx")  # the metadata's size wins, and must fit the input
