"""Sanity checks for saliency maps (Adebayo et al. 2018), done on the ONNX graph itself.

Model-parameter randomization: the weight initializers of the network's parametric layers (Conv,
Gemm, MatMul, normalization scale/bias) are re-initialized from the top layer down, the
randomized network is exported again with the same method and options, and its maps are compared
with the original ones (Spearman rank correlation, SSIM). *Cascading* randomizes the top k layers
together, for growing k; *independent* randomizes one group of layers at a time. A map that
explains the model must change: the check passes when the mean rank correlation after the whole
cascade is below a threshold. A map that survives (an edge detector does) is flagged.

Random-logit check (Sixt et al. 2020): the map for a random other class must differ from the map
for the predicted class; a map that does not depend on the class is flagged.

Re-initialization: every weight tensor is drawn from N(mean, std) of its own values, seeded per
layer, so activations keep their scale and the same layer gets the same values in both modes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from edgesal import metadata
from edgesal.errors import InputError
from edgesal.eval.graphs import prune
from edgesal.eval.model import ModelSpec
from edgesal.export import ExportOptions
from edgesal.export.targets import TARGET_INPUT, Target
from edgesal.image_input import graph_inputs
from edgesal.methods import MethodOptions

# op type -> input positions holding its learned parameters (normalization: scale and bias only,
# the running statistics are not parameters and a random variance could be negative)
PARAMETER_INPUTS = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "Gemm": (1, 2),
    "MatMul": (0, 1),
    "BatchNormalization": (1, 2),
    "InstanceNormalization": (1, 2),
    "LayerNormalization": (1, 2),
}


@dataclass(frozen=True)
class Layer:
    """A parametric node; ``index`` counts from the input (0) up to the top layer."""

    index: int
    node: str
    op_type: str
    weights: tuple[str, ...]


Randomizer = Callable[[Layer, str, np.ndarray], np.ndarray]


def parametric_layers(model: onnx.ModelProto) -> list[Layer]:
    """Nodes with float initializer parameters, in graph (topological) order."""
    inits = {t.name: t for t in model.graph.initializer}
    layers = []
    for i, node in enumerate(model.graph.node):
        positions = PARAMETER_INPUTS.get(node.op_type, ())
        weights = tuple(
            node.input[p]
            for p in positions
            if p < len(node.input) and node.input[p] in inits and _is_float(inits[node.input[p]])
        )
        if weights:
            name = node.name or f"{node.op_type}_{i}"
            layers.append(Layer(len(layers), name, node.op_type, weights))
    if not layers:
        raise InputError(
            "sanity check: the model has no parametric layers with initializer weights "
            f"(looked for {', '.join(PARAMETER_INPUTS)})"
        )
    return layers


def _is_float(tensor: onnx.TensorProto) -> bool:
    return tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)


def checkpoint_counts(n: int, spec: str = "log") -> list[int]:
    """How many top layers each cascading step randomizes: ``log`` (1, 2, 4, ..., n), ``every``
    (1..n), or a comma list of counts (``all`` means n)."""
    if spec == "log":
        counts = [1 << i for i in range(n.bit_length()) if (1 << i) < n] + [n]
    elif spec == "every":
        counts = list(range(1, n + 1))
    else:
        try:
            counts = [n if t.strip() == "all" else int(t) for t in spec.split(",") if t.strip()]
        except ValueError:
            raise InputError(
                f"--sanity-steps {spec}: use log, every or counts like 1,2,4,all"
            ) from None
        if not counts or any(c < 1 or c > n for c in counts):
            raise InputError(f"--sanity-steps {spec}: counts must be in 1..{n} (layers: {n})")
    return sorted(set(counts))


def groups(counts: list[int]) -> list[range]:
    """Independent-mode groups from the top: layers ranked (c_{k-1}, c_k] for each count."""
    return [range(lo, hi) for lo, hi in zip([0, *counts[:-1]], counts, strict=True)]


def default_randomizer(seed: int) -> Randomizer:
    """N(mean, std) of each tensor's own values, seeded by (seed, layer, weight position)."""

    def draw(layer: Layer, name: str, values: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([seed, layer.index, layer.weights.index(name)])
        drawn = rng.normal(float(values.mean()), float(values.std()), values.shape)
        return drawn.astype(values.dtype)

    return draw


def randomized(
    forward: onnx.ModelProto, layers: list[Layer], chosen: list[int], randomizer: Randomizer
) -> onnx.ModelProto:
    """A copy of ``forward`` whose layers at ``chosen`` indices have re-initialized weights."""
    model = copy.deepcopy(forward)
    inits = {t.name: t for t in model.graph.initializer}
    for index in chosen:
        layer = layers[index]
        for name in layer.weights:
            values = numpy_helper.to_array(inits[name])
            new = np.asarray(randomizer(layer, name, values), values.dtype)
            if new.shape != values.shape:
                raise InputError(f"randomizer gave {name} shape {new.shape}, not {values.shape}")
            inits[name].CopyFrom(numpy_helper.from_array(new, name))
    return model


def top_layers(layers: list[Layer], count: int) -> list[int]:
    """Indices of the ``count`` topmost layers."""
    return [layer.index for layer in layers[len(layers) - count :]]


def forward_of(model: onnx.ModelProto, spec: ModelSpec) -> onnx.ModelProto:
    """The original network inside saliency model ``model``: its non-saliency outputs only."""
    skip = set(spec.saliency.values())
    outputs = [o.name for o in model.graph.output if o.name not in skip]
    forward = prune(model, outputs)
    if TARGET_INPUT in {i.name for i in graph_inputs(forward)}:
        raise InputError(f"{spec.where}: the forward outputs depend on the 'target' input")
    return forward


def export_options(model: onnx.ModelProto, spec: ModelSpec) -> ExportOptions:
    """The options ``model`` was exported with (from its metadata), with the target made a run
    time input so every variant explains the same class as the original."""
    meta = metadata.read(model)
    params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
    known = {k: v for k, v in params.items() if k in MethodOptions.__dataclass_fields__}
    post = meta.get("postprocess") if isinstance(meta.get("postprocess"), dict) else {}
    methods = list(spec.saliency)
    kind = Target.parse(spec.target).kind
    return ExportOptions(
        method=methods[0],
        methods=methods if len(methods) > 1 else None,
        target="input" if kind in ("argmax", "class", "input") else spec.target,
        reduce=str(post.get("reduce", "absmax")),
        normalize=str(post.get("normalize", "max")),
        input=spec.input,
        layout=spec.layout,
        params=MethodOptions(**known),
    )


def options_summary(options: ExportOptions) -> dict:
    return {"methods": options.method_names(), "target": options.target, **asdict(options.params)}


NOTES = {  # check -> (passed, control flagged, method flagged)
    "parameters": (
        "maps change when the weights change",
        "control: ignores the weights, flagged as expected",
        "maps survive randomized weights: they do not explain the model (like an edge detector)",
    ),
    "class": (
        "maps change with the explained class",
        "control: ignores the class, flagged as expected",
        "maps barely depend on the explained class",
    ),
}


def verdict(final_mean: float, threshold: float, control: bool, check: str) -> dict:
    """Pass when the mean similarity is below ``threshold``; a failure is flagged (for the
    control, the expected outcome). ``check``: "parameters" or "class" (random logit)."""
    passed = bool(final_mean < threshold)
    ok, control_note, flagged_note = NOTES[check]
    note = ok if passed else (control_note if control else flagged_note)
    return {"passed": passed, "flagged": not passed, "threshold": threshold, "note": note}
