"""``edgesal export``: append a saliency subgraph so one inference call returns the map too."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx
from onnx import helper

from edgesal import __version__, metadata, roi
from edgesal.errors import InputError
from edgesal.graph.builder import Builder
from edgesal.graph.fold import drop_dead_nodes, fold_constants, remove_unused_initializers
from edgesal.graph.info import TensorInfo
from edgesal.graph.onehot import gather_one_hot_products
from edgesal.image_input import ImageInput, find_image_input, graph_inputs
from edgesal.methods import METHODS, MethodContext, MethodOptions
from edgesal.methods.integrated import smoothed
from edgesal.onnx_io import check, load_model, upgraded
from edgesal.postprocess import normalize, reduce_channels
from edgesal.targets import Target, build_seed

SALIENCY = "saliency"


@dataclass
class ExportOptions:
    """What ``edgesal export`` builds; the CLI flags map one to one onto these fields."""

    method: str = "vanilla"
    target: str = "argmax"
    reduce: str = "absmax"
    normalize: str = "max"
    input: str | None = None
    layout: str | None = None
    batch: int | None = None
    input_shape: tuple[int, ...] | None = None
    output_name: str = SALIENCY
    methods: list[str] | None = None  # several maps sharing one forward: saliency_<method>
    params: MethodOptions = field(default_factory=MethodOptions)
    roi: tuple[int, int, int, int] | None = None  # fixed window x0,y0,x1,y1 (edgesal/roi/)
    roi_size: tuple[int, int] | None = None  # W,H of a window placed at run time (input 'roi')
    roi_split: str | None = None  # split tensor of the ROI crop (default: by estimated cost)
    preprocess: dict[str, object] = field(default_factory=dict)  # Preprocess fields to set
    labels: list[str] | None = None  # class names, one per score

    def method_names(self) -> list[str]:
        return list(self.methods) if self.methods else [self.method]

    def validate(self) -> None:
        """Reject bad values up front, naming the flag."""
        for name in self.method_names():
            if name not in METHODS:
                raise InputError(f"--method {name}: choose one of {', '.join(METHODS)}")
        p = self.params
        if p.steps <= 0:
            raise InputError(f"--steps {p.steps}: must be >= 1")
        if p.samples <= 0:
            raise InputError(f"--samples {p.samples}: SmoothGrad needs at least 1 sample")
        if p.smooth < 0:
            raise InputError(f"--smooth {p.smooth}: the number of noisy samples must be >= 0")
        if p.sigma < 0:
            raise InputError(f"--sigma {p.sigma}: the noise level must be >= 0")


def export_saliency(model: onnx.ModelProto | str | Path, options: ExportOptions) -> onnx.ModelProto:
    """The model with the saliency subgraph appended and an extra output ``saliency``.

    The original outputs are kept unchanged. The input model is not modified.
    """
    options.validate()
    target = Target.parse(options.target)
    model = load_model(model) if isinstance(model, str | Path) else copy.deepcopy(model)
    model = upgraded(model)
    fix_input_shape(model, options.input, options.batch, options.input_shape)
    fold_constants(model)
    info = TensorInfo(model)
    _complete_output_shapes(model, info)
    image = find_image_input(model, info, options.input, options.layout)
    outputs = _output_names(options)
    taken = {o.name for o in model.graph.output} & set(outputs.values())
    if taken:
        raise InputError(f"the model already has outputs named {sorted(taken)}")
    b = Builder(model.graph, _opset(model), prefix="edgesal")
    scored, seed = build_seed(target, model, info, b)
    ctx = MethodContext(model, info, b, image, {scored: seed}, options.params, metadata.read(model))
    if options.roi is not None or options.roi_size is not None:
        ctx.roi = _roi_plan(model, info, image, ctx.seeds, options)
    dtype = info.np_dtype(image.tensor)
    for name, output in outputs.items():
        attribution = _attribution(ctx, name)
        saliency, shape = _postprocess(
            b, attribution, ctx.shape(attribution), image, options, dtype, ctx.roi
        )
        model.graph.node.append(
            helper.make_node("Identity", [saliency], [output], name=f"edgesal/{output}")
        )
        model.graph.output.append(
            helper.make_tensor_value_info(output, info.dtype(image.tensor), list(shape))
        )
    if ctx.roi is not None and ctx.roi.runtime:
        ctx.roi.add_output(b, model)
    lookups = gather_one_hot_products(model)
    drop_dead_nodes(model.graph, f"{b.prefix}/")  # what the rewrites left unread
    remove_unused_initializers(model)
    live = {o for n in model.graph.node for o in n.output} | {
        t.name for t in model.graph.initializer
    }
    seeds = [s for s in ctx.seeds.values() if s in live] + lookups
    _write_metadata(model, options, target, image, outputs, seeds, ctx.roi)
    check(model, "exported saliency model")
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return model


def _output_names(options: ExportOptions) -> dict[str, str]:
    names = options.method_names()
    if len(names) == 1:
        return {names[0]: options.output_name}
    return {name: f"{options.output_name}_{name}" for name in names}


def _attribution(ctx: MethodContext, name: str) -> str:
    """The raw attribution of method ``name``, wrapped in SmoothGrad when --smooth is set."""
    if ctx.options.smooth and name != "smoothgrad":
        return smoothed(ctx, name, ctx.image.tensor, ctx.options.smooth)
    return METHODS[name].build(ctx, ctx.image.tensor, 1)


def _roi_plan(model, info, image, seeds, options: ExportOptions) -> roi.RoiPlan:
    """The region-of-interest plan; a runtime window adds the ``roi`` input first."""
    plan = roi.plan(model, info, image, seeds, options.roi, options.roi_size, options.roi_split)
    if plan.runtime:
        names = {i.name for i in model.graph.input} | {o.name for o in model.graph.output}
        if {roi.ROI_INPUT, roi.ROI_USED} & (names | set(_output_names(options).values())):
            raise InputError(
                f"--roi-size: the model already has a tensor named '{roi.ROI_INPUT}' or "
                f"'{roi.ROI_USED}'"
            )
        plan.add_input(model)
    return plan


def _postprocess(b: Builder, attribution: str, shape, image: ImageInput, options, dtype, window):
    if window is not None:  # the region of interest: the map covers the window only
        attribution, shape = window.region(b, attribution, shape)
    reduced, shape, signed = reduce_channels(b, attribution, shape, image.layout, options.reduce)
    return normalize(b, reduced, shape, options.normalize, signed, dtype), shape


def fix_input_shape(
    model: onnx.ModelProto,
    name: str | None,
    batch: int | None,
    input_shape: tuple[int, ...] | None,
) -> None:
    """Replace symbolic dims of the image input: batch by ``batch`` (default 1), others by
    ``input_shape``; a symbolic non-batch dim without ``input_shape`` is an error naming the flag.
    """
    inputs = graph_inputs(model)
    rank4 = [i for i in inputs if len(i.type.tensor_type.shape.dim) == 4]
    chosen = next((i for i in inputs if i.name == name), None) if name else (rank4 or [None])[0]
    if chosen is None:
        return
    dims = chosen.type.tensor_type.shape.dim
    if input_shape is not None:
        if len(input_shape) != len(dims):
            raise InputError(
                f"--input-shape {','.join(map(str, input_shape))}: input '{chosen.name}' has rank "
                f"{len(dims)}"
            )
        wanted = list(input_shape)
    else:
        wanted = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        if wanted[0] is None or batch is not None:
            wanted[0] = batch or 1
        unknown = [i for i, d in enumerate(wanted) if d is None]
        if unknown:
            raise InputError(
                f"input '{chosen.name}' has symbolic dims at axes {unknown}; fix them with "
                "--input-shape N,C,H,W (or N,H,W,C)"
            )
    if any(d <= 0 for d in wanted):
        raise InputError(f"input shape {wanted} must be positive")
    for dim, value in zip(dims, wanted, strict=True):
        dim.Clear()
        dim.dim_value = value
    del model.graph.value_info[:]


def _complete_output_shapes(model: onnx.ModelProto, info: TensorInfo) -> None:
    """Give graph outputs declared without a shape the inferred one (the checker wants it)."""
    for output in model.graph.output:
        tensor_type = output.type.tensor_type
        dims = info.dims(output.name)
        if not tensor_type.HasField("shape") and dims is not None:
            output.CopyFrom(
                helper.make_tensor_value_info(output.name, info.dtype(output.name), list(dims))
            )


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _write_metadata(
    model: onnx.ModelProto,
    options: ExportOptions,
    target: Target,
    image: ImageInput,
    saliency_outputs: dict[str, str],
    seeds: list[str],
    window: roi.RoiPlan | None = None,
) -> None:
    existing = metadata.read(model)
    outputs = dict(existing.get("outputs") or {})
    outputs.setdefault("scores", model.graph.output[0].name)
    outputs["saliency"] = next(iter(saliency_outputs.values()))
    if len(saliency_outputs) > 1:
        outputs["saliency_by_method"] = saliency_outputs
    extra = {}
    if window is not None:
        extra["roi"] = window.describe()
        if window.runtime:
            outputs["roi_used"] = roi.ROI_USED
    if options.preprocess:
        channels = image.shape[1] if image.layout == "NCHW" else image.shape[3]
        extra["preprocess"] = metadata.preprocess_for(
            existing.get("preprocess"), options.preprocess, image.spatial, image.layout, channels
        )
    if options.labels is not None:
        extra["labels"] = _checked_labels(options.labels, model, outputs["scores"])
    metadata.write(
        model,
        {
            **extra,
            "version": __version__,
            "method": ",".join(saliency_outputs),
            "params": asdict(options.params),
            "target": str(target),
            "input": image.name,
            "layout": image.layout,
            "outputs": outputs,
            "postprocess": {"reduce": options.reduce, "normalize": options.normalize},
            "seeds": seeds,
        },
    )


def _checked_labels(labels: list[str], model: onnx.ModelProto, scores: str) -> list[str]:
    """``labels`` if there is one per score of an item of ``scores``; else an error."""
    dims = TensorInfo(model).dims(scores) or ()
    per_item = math.prod(dims[1:]) if len(dims) > 1 and all(d for d in dims[1:]) else None
    if per_item is not None and len(labels) != per_item:
        raise InputError(
            f"--labels: {len(labels)} names for output '{scores}', which scores {per_item} classes"
        )
    return labels


def save(model: onnx.ModelProto, path: str | Path) -> None:
    """Write ``model`` to ``path`` (creating folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
