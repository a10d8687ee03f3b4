"""Which token rankings move the output: deletion and insertion over tokens, and the
weight-randomization sanity check, for token saliency models ("attention is not attribution":
Jain & Wallace 2019; Wiegreffe & Pinter 2019 argue attention can still carry signal - so measure).

Deletion replaces the real tokens (unmasked, not special) by a baseline token ([MASK], [PAD] or
[UNK]) one at a time in order of decreasing score: the explained class's probability should
fall fast (low AUC is good). Insertion starts from the sequence with every real token replaced
and puts them back in that order (high AUC is good); Petsiuk et al. 2018's curves on tokens.
Rankings: every gradient map of the model, the last layer's attention (the first token's row,
or the mean over tokens as the model's --rollout-from says), attention rollout, attention
gradient and a random ranking (the control).

The sanity check (Adebayo et al. 2018) re-exports the model with its parametric layers
re-initialized from the top (:mod:`edgesal.eval.sanity`) and reports the Spearman correlation of
each map with the original's; a map that explains the model must change. The network comes out
of the saliency model itself (:func:`token_forward`, export only appends nodes) and is exported
again with the flags its metadata records (:func:`token_export_options`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from tqdm import tqdm

from edgesal import metadata
from edgesal.errors import InputError
from edgesal.eval.graphs import prune
from edgesal.eval.perturb import auc
from edgesal.eval.sanity import (
    checkpoint_counts,
    default_randomizer,
    parametric_layers,
    randomized,
    top_layers,
)
from edgesal.eval.similarity import spearman
from edgesal.export.targets import TARGET_INPUT, Target
from edgesal.options import ExportOptions, MethodOptions, TokenOptions
from edgesal.runtimes.model import probabilities
from edgesal.runtimes.text import TextExplainer, TokenExplanation
from edgesal.tokens.patches import GRID_SUFFIX

POINTS = 11  # curves are resampled to fractions 0, 0.1, ..., 1 of the real tokens to average
RANDOM = "random"
LAST_ATTENTION = "attention (last layer)"


@dataclass(frozen=True)
class TokenCurves:
    """Mean deletion / insertion AUC and mean curves (over texts) of one ranking."""

    deletion_auc: float
    insertion_auc: float
    deletion: np.ndarray
    insertion: np.ndarray


def real_positions(result: TokenExplanation, special: tuple[int, ...]) -> np.ndarray:
    """Positions of unmasked, non-special tokens."""
    return np.flatnonzero((result.mask == 1) & ~np.isin(result.ids, special))


def rollout_from(explainer: TextExplainer) -> str:
    """The query row the export read attention maps from: ``cls`` (first token) or ``mean``."""
    return str((explainer.meta.get("tokens") or {}).get("rollout_from") or "cls")


def model_maps(result: TokenExplanation, rollout_from: str) -> dict[str, np.ndarray]:
    """The maps the model computes, plus the last layer's attention (the first token's row, or
    the mask-weighted sum of the rows with ``rollout_from`` mean) when it has attention."""
    maps = dict(result.maps)
    if result.attention is not None:
        last = result.attention[-1]
        weights = result.mask.astype(np.float64)
        row = last[0] if rollout_from == "cls" else (weights[:, None] * last).sum(0)
        maps[LAST_ATTENTION] = np.asarray(row, np.float64)
    return maps


def rankings(
    result: TokenExplanation, rollout_from: str, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-position scores: |map| of every map, the last layer's attention, a random ranking."""
    scores = {name: np.abs(values) for name, values in model_maps(result, rollout_from).items()}
    scores[RANDOM] = rng.random(result.ids.size)
    return scores


def token_curves(
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    result: TokenExplanation,
    order: np.ndarray,
    baseline: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(deletion, insertion) probabilities of ``result.target`` after k = 0..n tokens of
    ``order`` (positions, best first) are replaced / restored."""
    n = order.size
    deleted = np.repeat(result.ids[None], n + 1, axis=0)
    inserted = deleted.copy()
    for k in range(n + 1):
        deleted[k, order[:k]] = baseline
        inserted[k, order[k:]] = baseline
    both = np.concatenate([deleted, inserted])
    masks = np.repeat(result.mask[None], both.shape[0], axis=0)
    probs = np.stack([probabilities(s) for s in predict(both, masks)])[:, result.target]
    return probs[: n + 1], probs[n + 1 :]


def resampled(curve: np.ndarray) -> np.ndarray:
    """A curve over k = 0..n moved tokens at fractions 0, 0.1, ..., 1 (linear interpolation)."""
    x = np.linspace(0.0, 1.0, curve.size)
    return np.interp(np.linspace(0.0, 1.0, POINTS), x, curve)


def evaluate_texts(
    explainer: TextExplainer,
    texts: list[str],
    baseline: int,
    special: tuple[int, ...],
    seed: int = 0,
    progress: bool = False,
) -> dict[str, TokenCurves]:
    """Mean deletion and insertion AUC per ranking over ``texts`` (texts with fewer than 2 real
    tokens are skipped: nothing to rank); ``progress``: a bar per text on stderr."""
    if not 0 <= baseline < (explainer.vocab or baseline + 1):
        raise InputError(f"--baseline-token {baseline}: not a row of the embedding table")
    query = rollout_from(explainer)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[float, float, np.ndarray, np.ndarray]]] = {}
    bar = tqdm(texts, desc="deletion/insertion", unit="text", disable=not progress, file=sys.stderr)
    for text in bar:
        result = explainer.explain(text)
        positions = real_positions(result, special)
        if positions.size < 2:
            continue
        for name, score in rankings(result, query, rng).items():
            order = positions[np.argsort(-score[positions], kind="stable")]
            deletion, insertion = token_curves(explainer.predict, result, order, baseline)
            rows.setdefault(name, []).append(
                (auc(deletion), auc(insertion), resampled(deletion), resampled(insertion))
            )
    if not rows:
        raise InputError("no text has 2 or more real tokens to rank")
    return {
        name: TokenCurves(
            float(np.mean([r[0] for r in entries])),
            float(np.mean([r[1] for r in entries])),
            np.mean([r[2] for r in entries], axis=0),
            np.mean([r[3] for r in entries], axis=0),
        )
        for name, entries in rows.items()
    }


def sanity_cascade(
    forward: onnx.ModelProto,
    export: Callable[[onnx.ModelProto], TextExplainer],
    texts: list[str],
    special: tuple[int, ...],
    seed: int = 0,
    steps: str = "log",
    progress: bool = False,
) -> dict[int, dict[str, float]]:
    """{k: {map: rho}}: the mean Spearman correlation rho (over texts, real tokens) of each map
    (and of the last layer's attention) with the original's after the top k parametric layers are
    re-initialized (Adebayo et al. 2018, cascading), k from ``steps`` (log: 1, 2, 4, ..., all;
    :func:`~edgesal.eval.sanity.checkpoint_counts`). ``export`` turns a forward model into an
    explainer with the original's options and a run-time target; every variant explains the
    class the original predicts. ``progress``: a bar per step on stderr."""
    layers = parametric_layers(forward)
    counts = checkpoint_counts(len(layers), steps)
    original = export(forward)
    query = rollout_from(original)
    reference = [original.explain(text) for text in texts]
    result: dict[int, dict[str, float]] = {}
    for count in tqdm(counts, desc="sanity", unit="step", disable=not progress, file=sys.stderr):
        chosen = top_layers(layers, count)
        variant = export(randomized(forward, layers, chosen, default_randomizer(seed)))
        per_map: dict[str, list[float]] = {}
        for text, ref in zip(texts, reference, strict=True):
            got = model_maps(variant.explain(text, target=ref.target), query)
            keep = real_positions(ref, special)
            for name, values in model_maps(ref, query).items():
                per_map.setdefault(name, []).append(spearman(values[keep], got[name][keep]))
        result[count] = {name: float(np.nanmean(v)) for name, v in per_map.items()}
    return result


def added_outputs(model: onnx.ModelProto) -> set[str]:
    """The outputs ``edgesal export`` added to token model ``model`` (maps, attention, their
    ``_grid`` forms), from its ``edgesal.outputs`` metadata."""
    declared = metadata.read(model).get("outputs")
    if not isinstance(declared, dict):
        return set()
    names: set[str] = set()
    for key, value in declared.items():
        if key != "scores":
            names.update(value.values() if isinstance(value, dict) else [value])
    return {str(n) for n in names} | {f"{n}{GRID_SUFFIX}" for n in names}


def token_forward(model: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """The original network inside token saliency model ``model``: export only appends nodes,
    so pruning to the outputs it did not add recovers it (as :func:`sanity.forward_of` does for
    image models)."""
    if metadata.read(model).get("modality") != "tokens":
        raise InputError(f"{where}: not a token saliency model (export it with --input input_ids)")
    added = added_outputs(model)
    kept = [o.name for o in model.graph.output if o.name not in added]
    if not kept or len(kept) == len(model.graph.output):
        raise InputError(f"{where}: edgesal.outputs does not tell the model's own outputs apart")
    forward = prune(model, kept)
    if TARGET_INPUT in {i.name for i in forward.graph.input}:
        raise InputError(f"{where}: the forward outputs depend on the 'target' input")
    return forward


def token_export_options(model: onnx.ModelProto) -> tuple[ExportOptions, TokenOptions]:
    """The flags token model ``model`` was exported with, read from its metadata, with the
    target made a run-time input (argmax, class and input targets) so that every variant of the
    sanity check explains the class the original predicts."""
    meta = metadata.read(model)
    facts = meta.get("tokens") if isinstance(meta.get("tokens"), dict) else {}
    params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
    post = meta.get("postprocess") if isinstance(meta.get("postprocess"), dict) else {}
    declared = meta.get("outputs") if isinstance(meta.get("outputs"), dict) else {}
    methods = list(declared.get("saliency_by_method") or str(meta.get("method")).split(","))
    target = str(meta.get("target", "argmax"))
    ids = next((i for i in model.graph.input if i.name == meta.get("input")), None)
    if ids is None:
        raise InputError(f"edgesal.input {meta.get('input')!r} is not an input of the model")
    shape = tuple(d.dim_value for d in ids.type.tensor_type.shape.dim)
    options = ExportOptions(
        method=methods[0],
        methods=methods if len(methods) > 1 else None,
        target="input" if Target.parse(target).kind in ("argmax", "class", "input") else target,
        reduce=str(post.get("reduce", "l2")),
        normalize=str(post.get("normalize", "max")),
        input=ids.name,
        input_shape=shape,
        labels=meta.get("labels"),
        params=MethodOptions(
            **{k: v for k, v in params.items() if k in MethodOptions.__dataclass_fields__}
        ),
    )
    tokens = TokenOptions(
        wrt=None if facts.get("table") else str(meta.get("wrt")),
        mask_input=facts.get("mask_input"),
        attention="attention" in declared,
        rollout_from=str(facts.get("rollout_from") or "cls"),
        baseline_token=facts.get("baseline_token"),
        special_tokens=tuple(int(i) for i in facts.get("special_tokens") or ()),
        patch_map=any(o.name.endswith(GRID_SUFFIX) for o in model.graph.output),
    )
    return options, tokens


def markdown(curves: dict[str, TokenCurves], sanity: dict[int, dict[str, float]] | None) -> str:
    """The table docs/tokens.md shows: AUCs per ranking, and the final cascade's Spearman."""
    final = sanity[max(sanity)] if sanity else {}
    lines = [
        "| ranking | deletion AUC (low is good) | insertion AUC (high is good) | Spearman "
        "after randomizing all layers |",
        "|---|---|---|---|",
    ]
    for name, c in sorted(curves.items(), key=lambda kv: kv[1].deletion_auc):
        rho = f"{final[name]:.2f}" if name in final else "-"
        lines.append(f"| {name} | {c.deletion_auc:.3f} | {c.insertion_auc:.3f} | {rho} |")
    return "\n".join(lines)


def special_ids(explainer: TextExplainer) -> tuple[int, ...]:
    """The tokenizer's special tokens ([CLS], [SEP], [PAD] ...), else the export's list."""
    facts = explainer.meta.get("tokens") if isinstance(explainer.meta.get("tokens"), dict) else {}
    if explainer.tokenizer is not None:
        added = explainer.tokenizer.get_added_tokens_decoder()
        found = tuple(sorted(i for i, token in added.items() if token.special))
        if found:
            return found
    return tuple(int(i) for i in facts.get("special_tokens") or ())


def default_baseline(explainer: TextExplainer) -> int:
    """[MASK] (or <mask>) when the tokenizer has one, else [UNK], else id 0."""
    if explainer.tokenizer is not None:
        for name in ("[MASK]", "<mask>", "[UNK]", "<unk>"):
            found = explainer.tokenizer.token_to_id(name)
            if found is not None:
                return int(found)
    return 0
