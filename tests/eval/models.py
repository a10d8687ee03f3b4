"""Models for the evaluation tests: a classifier with a known decisive region, and a small torch
network with a hand-written ONNX twin (same weights, same initializer names) for Quantus."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 32
REGION = (16, 8, 28, 16)  # x0, y0, x1, y1: the only pixels the region classifier looks at


def _model(nodes, inputs, outputs, weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, "eval_test", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def region_classifier(seed: int = 0, size: int = SIZE) -> onnx.ModelProto:
    """Two classes; logit_1 = 40 * sum_c mean(ReLU(conv3x3(x))_c * M) - 4, logit_0 = 0, where the
    mask M is 1 on :data:`REGION` only. Pixels in [0, 1] (the default preprocessing) light up the
    positive conv, so a natural image is class 1 because of what is inside the region, and only
    the region (plus the conv's 1-pixel reach) has any gradient."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = REGION
    mask = np.zeros((1, 1, size, size), np.float32)
    mask[..., y0:y1, x0:x1] = 1.0
    head = np.zeros((2, 4), np.float32)
    head[1] = 40.0
    weights = {
        "conv.w": rng.uniform(0.05, 0.15, (4, 3, 3, 3)).astype(np.float32),
        "conv.b": np.full(4, -0.3, np.float32),
        "mask": mask,
        "head.w": head,
        "head.b": np.array([0.0, -4.0], np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "conv.w", "conv.b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Mul", ["r", "mask"], ["m"]),
        helper.make_node("GlobalAveragePool", ["m"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "head.w", "head.b"], ["logits"], transB=1),
    ]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])
    return _model(nodes, [image], [logits], weights)


def region_images(count: int, seed: int = 0, size: int = SIZE) -> dict[str, np.ndarray]:
    """Uniform noise photos: whatever is outside the region cannot matter."""
    rng = np.random.default_rng(seed)
    return {f"noise{i}.png": rng.integers(0, 256, (size, size, 3), np.uint8) for i in range(count)}


def write_images(folder, images: dict[str, np.ndarray]) -> None:
    """Save RGB images as PNG files."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for name, rgb in images.items():
        cv2.imwrite(str(folder / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def torch_net(seed: int = 0):
    """conv(3->4) ReLU conv(4->6, stride 2) ReLU global-mean linear(6->5), torch's default init."""
    import torch
    from torch import nn

    class SmallNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
            self.fc = nn.Linear(6, 5)

        def forward(self, x):
            x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
            return self.fc(x.mean(dim=(2, 3)))

    torch.manual_seed(seed)
    return SmallNet().eval()


def onnx_twin(net, size: int = 24) -> onnx.ModelProto:
    """The ONNX graph of :func:`torch_net`, initializers named like the torch parameters."""
    weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    nodes = [
        helper.make_node("Conv", ["image", "conv1.weight", "conv1.bias"], ["c1"], pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node(
            "Conv", ["r1", "conv2.weight", "conv2.bias"], ["c2"], pads=[1] * 4, strides=[2, 2]
        ),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], transB=1),
    ]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])
    return _model(nodes, [image], [logits], weights)


def smooth_images(count: int, size: int = 24, seed: int = 0) -> dict[str, np.ndarray]:
    """Blurred noise photos: structure at several scales, distinct pixel values."""
    import cv2

    rng = np.random.default_rng(seed)
    images = {}
    for i in range(count):
        noise = rng.integers(0, 256, (size, size, 3)).astype(np.float32)
        images[f"img{i}.png"] = np.clip(cv2.GaussianBlur(noise, (5, 5), 1.5) * 1.6 - 80, 0, 255)
        images[f"img{i}.png"] = images[f"img{i}.png"].astype(np.uint8)
    return images
