"""``edgesal export``: append a saliency subgraph so one inference call returns the map too."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict
from pathlib import Path

import onnx
from onnx import helper

from edgesal import __version__, metadata, roi
from edgesal.errors import InputError
from edgesal.export.boxes import box_metadata
from edgesal.export.postprocess import add_output, normalize, reduce_channels
from edgesal.export.targets import Target, build_seed
from edgesal.graph.builder import Builder
from edgesal.graph.fold import drop_dead_nodes, fold_constants, remove_unused_initializers
from edgesal.graph.info import TensorInfo, is_static
from edgesal.graph.onehot import gather_one_hot_products
from edgesal.image_input import ExplainedInput, choose_input, find_input, graph_inputs
from edgesal.methods import METHODS, MethodContext
from edgesal.methods.integrated import smoothed
from edgesal.onnx_io import check, load_model, upgraded
from edgesal.options import ExportOptions, TokenOptions  # onnx-free; re-exported by edgesal.export
from edgesal.runtimes.audio import FrontEnd, input_layout
from edgesal.runtimes.errors import ModelError
from edgesal.tokens.vit import VitPlan, add_vit_outputs, plan_vit


def export_saliency(
    model: onnx.ModelProto | str | Path, options: ExportOptions, tokens: TokenOptions | None = None
) -> onnx.ModelProto:
    """The model with the saliency subgraph appended and an extra output ``saliency``.

    The original outputs are kept unchanged. The input model is not modified. On a vision
    transformer, ``tokens.attention`` / ``tokens.patch_map`` add the attention and patch-grid
    maps of the same call (:mod:`edgesal.tokens.vit`).
    """
    options.validate()
    target = Target.parse(options.target)
    model = load_model(model) if isinstance(model, str | Path) else copy.deepcopy(model)
    model = upgraded(model)
    fix_input_shape(model, options.input, options.batch, options.input_shape, options.shapes)
    fold_constants(model)
    info = TensorInfo(model)
    _complete_output_shapes(model, info)
    image = find_input(model, info, options.input_spec())
    if not image.is_image:
        _refuse_image_only(options, image)
    outputs = _output_names(options)
    vit = plan_vit(model, info, image, tokens or TokenOptions())
    if vit is not None and (options.roi is not None or options.roi_size is not None):
        raise InputError("--roi/--roi-size: not with --attention or --patch-map")
    added = [*outputs.values(), *(vit.output_names() if vit else [])]
    taken = {o.name for o in model.graph.output} & set(added)
    if taken:
        raise InputError(f"the model already has outputs named {sorted(taken)}")
    b = Builder(model.graph, _opset(model), prefix="edgesal")
    scored, seed = build_seed(target, model, info, b)
    ctx = MethodContext(model, info, b, image, {scored: seed}, options.params, metadata.read(model))
    if options.roi is not None or options.roi_size is not None:
        ctx.roi = _roi_plan(model, info, image, ctx.seeds, options)
    flags = "--attention/--patch-map"
    grads = ctx.gradient_recording(vit.recorded(), flags) if vit is not None else {}
    dtype = info.np_dtype(image.tensor)
    for name, output in outputs.items():
        attribution = _attribution(ctx, name)
        saliency, shape = _postprocess(
            b, attribution, ctx.shape(attribution), image, options, dtype, ctx.roi
        )
        add_output(model, saliency, output, shape, info.dtype(image.tensor))
    patch_maps = add_vit_outputs(model, ctx, vit, grads, options.normalize) if vit else {}
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
    if vit is not None:
        _write_vit_metadata(model, vit, patch_maps)
    if ctx.batching:  # multi-sample methods: one batch, rebatched, chunked or sequential
        metadata.write(model, {"batching": ctx.batching})
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


def _refuse_image_only(options: ExportOptions, explained: ExplainedInput) -> None:
    """Options that only mean something on an image grid, refused by flag for other inputs."""
    what = f"input '{explained.name}' is {explained.modality} ({explained.axes})"
    cams = [m for m in options.method_names() if m.startswith("gradcam")]
    if cams:
        raise InputError(f"--method {cams[0]}: Grad-CAM needs an image input; {what}")
    used = [
        flag
        for flag, value in (
            ("--roi", options.roi),
            ("--roi-size", options.roi_size),
            ("preprocess flags", options.preprocess or None),
        )
        if value is not None
    ]
    if used:
        raise InputError(f"{used[0]}: only for image inputs; {what}")
    baseline = options.params.baseline
    if baseline != "zeros" and not _is_number(baseline):
        raise InputError(f"--baseline {baseline}: only zeros or a number for {what}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _postprocess(
    b: Builder, attribution: str, shape, image: ExplainedInput, options, dtype, window
):
    if window is not None:  # the region of interest: the map covers the window only
        attribution, shape = window.region(b, attribution, shape)
    reduced, shape, signed = reduce_channels(
        b, attribution, shape, image.channel_axis, options.reduce
    )
    return normalize(b, reduced, shape, options.normalize, signed, dtype), shape


def fix_input_shape(
    model: onnx.ModelProto,
    name: str | None,
    batch: int | None,
    input_shape: tuple[int, ...] | None,
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> None:
    """Replace symbolic dims of the explained input: batch by ``batch`` (default 1), others by
    ``input_shape``; a symbolic non-batch dim without ``input_shape`` is an error naming the flag.
    Other inputs (caches, masks) take their ``shapes`` entry (``--shape NAME=...``); otherwise a
    symbolic dim named like one of the explained input's takes its value, and a symbolic leading
    dim the batch.
    """
    chosen = choose_input(model, name)
    if chosen is None:
        return
    dims = chosen.type.tensor_type.shape.dim
    static = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if input_shape is not None:
        wanted = _given_shape(chosen.name, static, input_shape)
    else:
        known = list(static)
        if known[0] is None or batch is not None:
            known[0] = batch or 1
        unknown = [i for i, d in enumerate(known) if d is None]
        if unknown:
            example = "N,C,H,W (or N,H,W,C)" if len(dims) == 4 else f"with {len(dims)} sizes"
            raise InputError(
                f"input '{chosen.name}' has symbolic dims at axes {unknown}; fix them with "
                f"--input-shape {example}"
            )
        wanted = [d for d in known if d is not None]  # all of them, after the check
    if any(d <= 0 for d in wanted):
        raise InputError(f"input shape {wanted} must be positive")
    by_symbol = {d.dim_param: v for d, v in zip(dims, wanted, strict=True) if d.dim_param}
    _set_dims(dims, wanted)
    others = {i.name: i for i in graph_inputs(model) if i.name != chosen.name}
    strangers = sorted(set(shapes or {}) - set(others))
    if strangers:
        raise InputError(
            f"--shape {strangers[0]}=...: no other input of that name (inputs besides "
            f"'{chosen.name}': {', '.join(others) or 'none'})"
        )
    for other in others.values():
        _fix_other(other, (shapes or {}).get(other.name), wanted[0], by_symbol)
    del model.graph.value_info[:]


def _fix_other(
    value: onnx.ValueInfoProto, given: tuple[int, ...] | None, batch: int, by_symbol: dict
) -> None:
    """Static dims for an input that is not explained: ``given`` (checked), else the size of the
    explained input's dim of the same name (``by_symbol``) or, leading, the batch; any other
    symbolic dim is an error."""
    dims = value.type.tensor_type.shape.dim
    static = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if given is not None:
        _set_dims(dims, _given_shape(value.name, static, given, f"--shape {value.name}="))
        return
    for i, dim in enumerate(dims):
        if static[i] is None:
            static[i] = by_symbol.get(dim.dim_param) or (batch if i == 0 else None)
    unknown = [i for i, d in enumerate(static) if d is None]
    if unknown:
        raise InputError(
            f"input '{value.name}' (not explained) has symbolic dims at axes {unknown}; fix them "
            f"with --shape {value.name}=D0,D1,... ({len(static)} sizes)"
        )
    _set_dims(dims, [d for d in static if d is not None])  # all of them, after the check


def _given_shape(
    name: str, static: list[int | None], given: tuple[int, ...], flag: str = "--input-shape "
) -> list[int]:
    """``--input-shape`` (or ``--shape NAME=``) checked against the input's rank and its static
    dims."""
    text = flag + ",".join(map(str, given))
    if len(given) != len(static):
        raise InputError(f"{text}: input '{name}' has rank {len(static)}")
    clash = [i for i, (d, g) in enumerate(zip(static, given, strict=True)) if d and i and d != g]
    if clash:
        shown = "[" + ", ".join(str(d) if d else "?" for d in static) + "]"
        raise InputError(
            f"{text}: input '{name}' has shape {shown}; axes {clash} are fixed by the model"
        )
    if any(g <= 0 for g in given):
        raise InputError(f"{text}: sizes must be positive")
    return list(given)


def _set_dims(dims, values: list[int]) -> None:
    for dim, value in zip(dims, values, strict=True):
        dim.Clear()
        dim.dim_value = value


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
    image: ExplainedInput,
    saliency_outputs: dict[str, str],
    seeds: list[str],
    window: roi.RoiPlan | None = None,
) -> None:
    existing = metadata.read(model)
    outputs = dict(existing.get("outputs") or {})
    outputs.setdefault("scores", model.graph.output[0].name)
    if target.tensor is not None and target.runtime_choice:  # output:NAME:input, a detector
        outputs["scores"] = _graph_output(model, target.tensor, f"--target {target}")
    extra: dict[str, object] = {}
    if options.boxes_output is not None:
        extra["boxes"] = box_metadata(options.box_options(), model, outputs["scores"])
        outputs["boxes"] = options.boxes_output
    outputs["saliency"] = next(iter(saliency_outputs.values()))
    if len(saliency_outputs) > 1:
        outputs["saliency_by_method"] = saliency_outputs
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
    if options.audio is not None:
        extra["audio"] = _checked_audio(options.audio, image)
    metadata.write(
        model,
        {
            **extra,
            "version": __version__,
            "method": ",".join(saliency_outputs),
            "params": asdict(options.params),
            "target": str(target),
            "input": image.name,
            **({"layout": image.layout} if image.is_image else {}),
            "modality": image.modality,
            "axes": image.axes,
            "map_axes": image.map_axes if options.reduce != "none" else image.axes,
            "outputs": outputs,
            "postprocess": {"reduce": options.reduce, "normalize": options.normalize},
            "seeds": seeds,
        },
    )


def _write_vit_metadata(model: onnx.ModelProto, vit: VitPlan, patch_maps: dict[str, str]) -> None:
    """``edgesal.patches`` and the outputs a ViT export adds (``patch_maps``: grid maps that
    runtimes offer as methods)."""
    outputs = dict(metadata.read(model)["outputs"])
    outputs.update((name, name) for name in vit.output_names() if name not in patch_maps.values())
    outputs["patch_maps"] = patch_maps
    metadata.write(model, {"outputs": outputs, "patches": vit.describe()})


def _checked_audio(fields: dict, image: ExplainedInput) -> dict:
    """The ``--audio-frontend`` fields, refused by name when they describe no front end or make
    another number of features per frame than the explained input reads."""
    try:
        front = FrontEnd.from_meta(fields, "--audio-frontend")
        dims = dict(
            zip(input_layout(front, len(image.shape), image.axes), image.shape, strict=True)
        )
    except ModelError as exc:
        raise InputError(str(exc)) from None
    if dims.get("F") != front.features:
        raise InputError(
            f"--audio-frontend: makes {front.features} features per frame, input "
            f"'{image.name}' {list(image.shape)} ({image.axes}) reads {dims.get('F')}"
        )
    return fields


def _graph_output(model: onnx.ModelProto, name: str, flag: str) -> str:
    """``name`` if it is an output of ``model`` (the runtime reads it), else an error naming
    ``flag``."""
    names = [o.name for o in model.graph.output]
    if name not in names:
        raise InputError(
            f"{flag}: '{name}' is not an output of the model (outputs: {', '.join(names)}); "
            "the runtime reads it to choose and draw detections"
        )
    return name


def _checked_labels(labels: list[str], model: onnx.ModelProto, scores: str) -> list[str]:
    """``labels`` if there is one per score of an item of ``scores``; else an error."""
    dims = TensorInfo(model).dims(scores) or ()
    rest = dims[1:]  # unknown (symbolic or 0) sizes leave the count unchecked
    per_item = math.prod(rest) if rest and is_static(rest) and all(rest) else None
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
