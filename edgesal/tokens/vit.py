"""Vision transformers through the image path: the image map as for any image model and, from
the same inference call, the maps on the patch grid [N, H/p, W/p] a ViT/DeiT works on.

* ``patch_map`` (``--patch-map``): the gradient at the patch tokens (the output of the
  patch-embedding Conv, before the class token and position embeddings are added: the same
  gradient), l2 over the embedding axis, normalized as the image map: token saliency per patch.
* ``--attention``: ``attention`` [N, L, T, T], ``attention_rollout`` and ``attention_gradient``
  [N, T] as for token models (:mod:`edgesal.tokens.attention`), and both flows on the grid,
  ``attention_rollout_grid`` and ``attention_gradient_grid``, normalized to max 1 over the
  patches (the class token's own share of the flow left out).

Everything reads the backward pass of the vanilla image map
(``MethodContext.gradient_recording``). The metadata lists the grid maps under
``outputs.patch_maps`` (name -> output), which runtimes offer as methods and upsample onto frames
(``edgesal run --methods attention_rollout``).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from edgesal.errors import InputError
from edgesal.export.postprocess import add_output, normalize
from edgesal.graph.info import TensorInfo
from edgesal.image_input import ExplainedInput
from edgesal.methods import MethodContext
from edgesal.options import TokenOptions
from edgesal.tokens.attention import (
    ATTENTION,
    ATTENTION_GRADIENT,
    ROLLOUT,
    AttentionLayer,
    add_attention_outputs,
    find_attention,
)
from edgesal.tokens.patches import GRID_SUFFIX, on_grid, patch_embedding

PATCH_MAP = "patch_map"
PATCH_METHOD = "patch"  # the patch map's name among a runtime's methods
MAX_LEADING_TOKENS = 8  # class, distillation and register tokens before the patches


@dataclass(frozen=True)
class VitPlan:
    """Where the patch grid comes from and which attention layers the export reads."""

    embedding: str  # patch-embedding Conv output [N, D, H/p, W/p]
    grid: tuple[int, int]  # (H/p, W/p)
    length: int  # tokens T: patches plus leading (class, distillation) tokens
    layers: tuple[AttentionLayer, ...]  # empty without --attention
    patch_map: bool
    rollout_from: str

    def output_names(self) -> list[str]:
        names = [PATCH_MAP] if self.patch_map else []
        if self.layers:
            flows = [ROLLOUT, ATTENTION_GRADIENT]
            names += [ATTENTION, *flows, *(flow + GRID_SUFFIX for flow in flows)]
        return names

    def recorded(self) -> list[str]:
        """The tensors whose gradients the outputs read: the patch embedding, the attention."""
        return [self.embedding, *(layer.probs for layer in self.layers)]

    def describe(self) -> dict:
        """The ``edgesal.patches`` metadata entry."""
        return {
            "grid": list(self.grid),
            "embedding": self.embedding,
            "tokens": self.length,
            "layers": len(self.layers),
            "rollout_from": self.rollout_from if self.layers else None,
        }


def plan_vit(
    model: onnx.ModelProto, info: TensorInfo, image: ExplainedInput, tokens: TokenOptions
) -> VitPlan | None:
    """The ViT plan when ``--attention`` or ``--patch-map`` is given on an image input, else
    None; token-only flags are refused by name."""
    token_only = [
        flag
        for flag, value in (
            ("--mask-input", tokens.mask_input),
            ("--baseline-token", tokens.baseline_token),
            ("--special-tokens", tokens.special_tokens or None),
        )
        if value is not None
    ]
    if token_only:
        raise InputError(
            f"{token_only[0]}: only for token inputs (--input naming token ids, or --wrt); "
            f"input '{image.name}' is {image.modality}"
        )
    if not (tokens.attention or tokens.patch_map):
        return None
    if not image.is_image:
        raise InputError(
            f"--attention/--patch-map: input '{image.name}' is {image.modality} ({image.axes}); "
            "they are for vision transformers' images and for token models (--input TOKEN_IDS)"
        )
    embedding, grid = patch_embedding(model, info, image.tensor)
    patches = grid[0] * grid[1]
    length = token_count(model, info, patches) if tokens.attention else patches
    layers = tuple(find_attention(model, info, length)) if tokens.attention else ()
    return VitPlan(embedding, grid, length, layers, tokens.patch_map, tokens.rollout_from)


def token_count(model: onnx.ModelProto, info: TensorInfo, patches: int) -> int:
    """T of the attention Softmaxes ([N, H, T, T]): the patches plus up to
    ``MAX_LEADING_TOKENS`` leading tokens."""
    lengths = set()
    for node in model.graph.node:
        dims = info.dims(node.output[0]) if node.op_type == "Softmax" else None
        if dims and len(dims) == 4 and isinstance(dims[3], int) and dims[2] == dims[3]:
            lengths.add(dims[3])
    fits = sorted(t for t in lengths if patches <= t <= patches + MAX_LEADING_TOKENS)
    if len(fits) != 1:
        found = ", ".join(map(str, sorted(lengths))) or "none"
        raise InputError(
            f"--attention: expected one attention length T = {patches} patches + up to "
            f"{MAX_LEADING_TOKENS} class tokens; the graph's [N, H, T, T] Softmax outputs have "
            f"T = {found}"
        )
    return fits[0]


def add_vit_outputs(
    model: onnx.ModelProto, ctx: MethodContext, plan: VitPlan, grads: dict[str, str], how: str
) -> dict[str, str]:
    """Adds the plan's outputs; returns the grid maps as {runtime method name: output}.
    ``how`` normalizes the patch map as the image map is (``--normalize``)."""
    b, n = ctx.b, ctx.image.shape[0]
    dtype, elem = ctx.dtype(ctx.image.tensor), ctx.info.dtype(ctx.image.tensor)
    on_patches = (n, *plan.grid)
    maps = {}
    if plan.patch_map:
        norm = b.reduce("ReduceL2", grads[plan.embedding], [1], keepdims=0)
        add_output(model, normalize(b, norm, on_patches, how, False, dtype), PATCH_MAP,
                   on_patches, elem)  # fmt: skip
        maps[PATCH_METHOD] = PATCH_MAP
    if plan.layers:
        layers = list(plan.layers)
        add_attention_outputs(
            model, b, layers, grads, None, plan.rollout_from, (n, plan.length), dtype, elem
        )
        for flow in (ATTENTION_GRADIENT, ROLLOUT):  # runtimes: the cheaper one last
            grid = on_grid(b, flow, n, plan.length, plan.grid)
            scaled = normalize(b, grid, on_patches, "max", False, dtype)
            add_output(model, scaled, flow + GRID_SUFFIX, on_patches, elem)
            maps[flow] = flow + GRID_SUFFIX
    return maps
