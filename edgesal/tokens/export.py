"""The token path of ``edgesal export``: saliency per token of a transformer, and its attention.

The map differentiates the output of the ids' embedding lookup (:mod:`edgesal.tokens.lookup`), or
any float tensor named with ``--wrt``; the methods are the image methods (vanilla, gradxinput,
integrated, smoothgrad), run on embeddings. The map is [N, T] (``--reduce`` over the embedding
axis; ``dot`` = sum_d A[n,t,d] (x[n,t,d] for gradient methods): gradient x input per token),
masked positions set to 0, then normalized. ``--attention`` adds the outputs of
:mod:`edgesal.tokens.attention` to the same inference call.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np
import onnx
from onnx import helper

from edgesal import __version__, metadata
from edgesal.errors import InputError
from edgesal.export.pipeline import (
    _checked_labels,
    _complete_output_shapes,
    _opset,
    _output_names,
)
from edgesal.export.postprocess import add_output, normalize
from edgesal.export.targets import Target, build_seed
from edgesal.graph.builder import Builder
from edgesal.graph.fold import drop_dead_nodes, fold_constants, remove_unused_initializers
from edgesal.graph.info import TensorInfo
from edgesal.graph.onehot import gather_one_hot_products
from edgesal.image_input import ExplainedInput, graph_inputs
from edgesal.methods import METHODS, MethodContext
from edgesal.methods.integrated import smoothed
from edgesal.onnx_io import check, load_model, upgraded
from edgesal.options import ExportOptions, TokenOptions
from edgesal.tokens import attention as att
from edgesal.tokens.baseline import token_reference, token_spec
from edgesal.tokens.lookup import (
    TokenLookup,
    checked_mask,
    find_lookup,
    is_integer_input,
    position_limit,
    wrt_input,
)
from edgesal.tokens.patches import GRID_SUFFIX, on_grid, patch_grid

TOKEN_REDUCTIONS = ("l2", "absmax", "abssum", "dot", "none")
TOKEN_METHODS = ("vanilla", "gradxinput", "integrated", "smoothgrad")
_TIMES_INPUT = ("gradxinput", "integrated")  # attributions already multiplied by (x - x')


@dataclass(frozen=True)
class TokenInput(ExplainedInput):
    """An explained input on token embeddings: ``lookup`` (None with --wrt), ``mask`` input and
    the special token ids the IG reference keeps."""

    lookup: TokenLookup | None = None
    mask: str | None = None
    special: tuple[int, ...] = ()

    def reference(self, b: Builder, spec: str, info: TensorInfo, x: str, copies: int) -> str:
        """The IG reference x' for the points ``x`` ([N * copies, T, D]; see
        :mod:`edgesal.tokens.baseline`)."""
        if self.lookup is None:
            if spec != "zeros":
                raise InputError(f"--baseline {spec}: with --wrt only zeros is defined")
            return b.const(np.zeros((1, *self.shape[1:]), info.np_dtype(self.tensor)))
        look = self.lookup
        return token_reference(
            b, spec, look.ids, x, look.table, look.vocab, self.special, info.shape(x), copies,
            info.np_dtype(look.tensor), info.np_dtype(look.ids),
        )  # fmt: skip


def is_token_export(model: onnx.ModelProto, options: ExportOptions, tokens: TokenOptions) -> bool:
    """True when the export takes the token path: --wrt, or --input naming an integer input."""
    return tokens.wrt is not None or (
        options.input is not None and is_integer_input(model, options.input)
    )


def export_token_saliency(
    model: onnx.ModelProto | str | Path, options: ExportOptions, tokens: TokenOptions
) -> onnx.ModelProto:
    """The model with outputs ``saliency`` [N, T] (and ``attention*`` with --attention) added."""
    if tokens.baseline_token is not None:
        options = replace(
            options, params=replace(options.params, baseline=token_spec(tokens.baseline_token))
        )
    options.validate()
    _validate(options, tokens)
    target = Target.parse(options.target)
    model = load_model(model) if isinstance(model, str | Path) else copy.deepcopy(model)
    model = upgraded(model)
    fed = options.input
    if fed is None and tokens.wrt is not None:  # the input --wrt depends on
        fed = wrt_input(model, TensorInfo(model), tokens.wrt, None)
    if fed is None:
        raise InputError("--input: name the token ids input, or give --wrt")
    fix_token_shapes(model, fed, options.batch, options.input_shape)
    info = TensorInfo(model)
    explained = _explained(model, info, options, tokens)
    if explained.lookup is not None:
        position_limit(model, info, explained.lookup)
    fold_constants(model)
    info = TensorInfo(model)
    _complete_output_shapes(model, info)
    outputs = _output_names(options)
    extra = _attention_names(tokens)
    taken = {o.name for o in model.graph.output} & (set(outputs.values()) | set(extra))
    if taken:
        raise InputError(f"the model already has outputs named {sorted(taken)}")
    layers = att.find_attention(model, info, explained.shape[1]) if tokens.attention else []
    b = Builder(model.graph, _opset(model), prefix="edgesal")
    scored, seed = build_seed(target, model, info, b)
    ctx = MethodContext(
        model, info, b, explained, {scored: seed}, options.params, metadata.read(model)
    )
    dtype = info.np_dtype(explained.tensor)
    weights = _mask_weights(b, explained, dtype)
    probs = [layer.probs for layer in layers]  # one backward pass: the map's and dS/dA
    grads = ctx.gradient_recording(probs, "--attention") if tokens.attention else {}
    for name, output in outputs.items():
        saliency = _token_map(ctx, name, options, weights, dtype)
        add_output(model, saliency, output, ctx.shape(saliency), info.dtype(explained.tensor))
    if layers:
        n_t = (explained.shape[0], explained.shape[1])
        att.add_attention_outputs(
            model, b, layers, grads, weights, tokens.rollout_from, n_t, dtype,
            info.dtype(explained.tensor),
        )  # fmt: skip
    if tokens.patch_map:
        _grid_outputs(model, ctx, [*outputs.values(), *extra])
    lookups = gather_one_hot_products(model)
    drop_dead_nodes(model.graph, f"{b.prefix}/")
    remove_unused_initializers(model)
    live = {o for n in model.graph.node for o in n.output} | {
        t.name for t in model.graph.initializer
    }
    seeds = [s for s in ctx.seeds.values() if s in live] + lookups
    _write_metadata(model, ctx, options, tokens, target, outputs, extra if layers else [], seeds)
    check(model, "exported token saliency model")
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return model


def _validate(options: ExportOptions, tokens: TokenOptions) -> None:
    for name in options.method_names():
        if name not in TOKEN_METHODS:
            raise InputError(
                f"--method {name}: token inputs take {', '.join(TOKEN_METHODS)} (Grad-CAM and "
                "guided backpropagation are for conv nets)"
            )
    if options.reduce not in TOKEN_REDUCTIONS:
        raise InputError(f"--reduce {options.reduce}: choose one of {', '.join(TOKEN_REDUCTIONS)}")
    if options.roi is not None or options.roi_size is not None or options.preprocess:
        raise InputError("--roi, --roi-size and preprocess flags are for image inputs")
    if tokens.rollout_from not in att.ROLLOUT_FROM:
        raise InputError(
            f"--rollout-from {tokens.rollout_from}: choose one of {', '.join(att.ROLLOUT_FROM)}"
        )


def fix_token_shapes(
    model: onnx.ModelProto, ids: str | None, batch: int | None, shape: tuple[int, ...] | None
) -> None:
    """Fix symbolic [N, T] dims of the ids and of every input sharing their dim names (masks,
    token types): N = ``batch`` or 1, T from ``--input-shape N,T`` (required when symbolic)."""
    inputs = graph_inputs(model)
    chosen = next((i for i in inputs if i.name == ids), None) if ids else None
    if chosen is None:
        listed = ", ".join(i.name for i in inputs)
        raise InputError(f"--input {ids}: the model has no such input (inputs: {listed})")
    dims = chosen.type.tensor_type.shape.dim
    if shape is not None and len(shape) != len(dims):
        raise InputError(
            f"--input-shape {','.join(map(str, shape))}: input '{ids}' has rank {len(dims)}"
        )
    wanted = list(shape) if shape else [d.dim_value or None for d in dims]
    if shape is None and (wanted[0] is None or batch is not None):
        wanted[0] = batch or 1
    unknown = [i for i, d in enumerate(wanted) if d is None]
    if unknown:
        raise InputError(
            f"input '{ids}' has symbolic dims at axes {unknown}; fix the sequence length with "
            "--input-shape N,T (e.g. 1,128)"
        )
    if any(d <= 0 for d in wanted if d is not None):  # none is None after the check above
        raise InputError(f"--input-shape {wanted}: sizes must be positive")
    by_symbol = {d.dim_param: v for d, v in zip(dims, wanted, strict=True) if d.dim_param}
    for entry in inputs:
        entry_dims = entry.type.tensor_type.shape.dim
        same_rank = len(entry_dims) == len(dims)
        for axis, dim in enumerate(entry_dims):
            value = by_symbol.get(dim.dim_param) if dim.dim_param else None
            if entry is chosen or (value is None and same_rank and not dim.dim_value):
                value = wanted[axis]
            if value is not None and not dim.dim_value:
                dim.Clear()
                dim.dim_value = value
    del model.graph.value_info[:]


def _explained(
    model: onnx.ModelProto, info: TensorInfo, options: ExportOptions, tokens: TokenOptions
) -> TokenInput:
    if tokens.wrt is None:
        if options.input is None:  # is_token_export: without --wrt, --input names the ids
            raise InputError("--input: name the token ids input, or give --wrt")
        look = find_lookup(model, info, options.input)
        mask = (
            checked_mask(model, info, tokens.mask_input, look.shape)
            if tokens.mask_input
            else look.mask
        )
        base = look.explained()
        return TokenInput(**_fields(base), lookup=look, mask=mask, special=tokens.special_tokens)
    fed = wrt_input(model, info, tokens.wrt, options.input)
    shape = info.shape(tokens.wrt)
    if len(shape) < 2:
        raise InputError(f"--wrt {tokens.wrt}: shape {list(shape)} has no batch and token axes")
    mask = checked_mask(model, info, tokens.mask_input, shape) if tokens.mask_input else None
    axes = "N,T,D" if len(shape) == 3 else ",".join(["N"] + [f"D{i}" for i in range(1, len(shape))])
    return TokenInput(
        fed, tokens.wrt, "", shape, modality="tokens", axes=axes,
        channel_axis=len(shape) - 1 if len(shape) == 3 else None, mask=mask,
    )  # fmt: skip


def _fields(value: ExplainedInput) -> dict:
    return {f: getattr(value, f) for f in ExplainedInput.__dataclass_fields__}


def _mask_weights(b: Builder, explained: TokenInput, dtype) -> str | None:
    """The attention mask as float [N, T] (1 = token, 0 = padding), or None."""
    if explained.mask is None:
        return None
    return b.Cast(explained.mask, to=helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def _token_map(ctx: MethodContext, name: str, options: ExportOptions, weights, dtype) -> str:
    """Method ``name``'s attribution reduced over the embedding axis, masked, normalized."""
    b, x = ctx.b, ctx.image.tensor
    if ctx.options.smooth and name != "smoothgrad":
        attribution = smoothed(ctx, name, x, ctx.options.smooth)
    else:
        attribution = METHODS[name].build(ctx, x, 1)
    shape = ctx.shape(attribution)
    how, signed = options.reduce, options.reduce in ("dot", "none")
    last = len(shape) - 1
    if how == "dot":
        product = attribution if name in _TIMES_INPUT else b.Mul(attribution, x)
        reduced = b.reduce("ReduceSum", product, [last], keepdims=0)
    elif how == "none" or ctx.image.channel_axis is None:
        reduced = attribution if how == "none" else b.Abs(attribution)
    elif how == "absmax":
        reduced = b.reduce("ReduceMax", b.Abs(attribution), [last], keepdims=0)
    else:
        reduced = b.reduce("ReduceL1" if how == "abssum" else "ReduceL2", attribution, [last], 0)
    if weights is not None:
        out_shape = ctx.shape(reduced)
        mask = (
            weights
            if len(out_shape) == 2
            else b.Unsqueeze(weights, b.ints(range(2, len(out_shape))))
        )
        reduced = b.Mul(reduced, mask)
    return normalize(b, reduced, ctx.shape(reduced), options.normalize, signed, dtype)


def _attention_names(tokens: TokenOptions) -> list[str]:
    return [att.ATTENTION, att.ROLLOUT, att.ATTENTION_GRADIENT] if tokens.attention else []


def _grid_outputs(model: onnx.ModelProto, ctx: MethodContext, names: list[str]) -> None:
    """``<name>_grid`` [N, H/p, W/p] for every [N, T] map output among ``names``."""
    n, length = ctx.image.shape[0], ctx.image.shape[1]
    grid = patch_grid(model, ctx.info, ctx.image.tensor)
    float_type = ctx.info.dtype(ctx.image.tensor)
    declared = {
        o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output
    }
    for name in names:
        if declared.get(name) == [n, length]:
            on = on_grid(ctx.b, name, n, length, grid)
            add_output(model, on, name + GRID_SUFFIX, (n, *grid), float_type)


def _write_metadata(model, ctx: MethodContext, options, tokens, target, outputs, extra, seeds):
    explained = cast(TokenInput, ctx.image)  # export_token_saliency built ctx on a TokenInput
    existing = metadata.read(model)
    declared = dict(existing.get("outputs") or {})
    declared.setdefault("scores", model.graph.output[0].name)
    declared["saliency"] = next(iter(outputs.values()))
    if len(outputs) > 1:
        declared["saliency_by_method"] = outputs
    declared.update({name: name for name in extra})
    look = explained.lookup
    token_facts = {
        "mask_input": explained.mask,
        "special_tokens": list(explained.special),
        "baseline_token": tokens.baseline_token,
        "rollout_from": tokens.rollout_from if extra else None,
        "vocab": look.vocab if look else None,
        "table": look.table if look else None,
        "length": explained.shape[1],
    }
    labels = options.labels
    extra_keys: dict[str, object] = (
        {} if labels is None else {"labels": _checked_labels(labels, model, declared["scores"])}
    )
    if ctx.batching:
        extra_keys["batching"] = ctx.batching
    metadata.write(
        model,
        {
            **extra_keys,
            "version": __version__,
            "method": ",".join(outputs),
            "params": asdict(options.params),
            "target": str(target),
            "input": explained.name,
            "modality": "tokens",
            "axes": explained.axes,
            "wrt": explained.tensor,
            "tokens": token_facts,
            "outputs": declared,
            "postprocess": {"reduce": options.reduce, "normalize": options.normalize},
            "seeds": seeds,
        },
    )
