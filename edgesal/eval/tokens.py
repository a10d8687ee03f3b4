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
each map with the original's; a map that explains the model must change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgesal.errors import InputError
from edgesal.eval.perturb import auc
from edgesal.eval.sanity import (
    checkpoint_counts,
    default_randomizer,
    parametric_layers,
    randomized,
    top_layers,
)
from edgesal.eval.similarity import spearman
from edgesal.runtimes.model import probabilities
from edgesal.runtimes.text import TextExplainer, TokenExplanation
from edgesal.tokens.explain import read_lines

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


def rankings(
    result: TokenExplanation, rollout_from: str, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-position scores of every map, the last layer's attention and a random ranking."""
    scores = {name: np.abs(values) for name, values in result.maps.items()}
    if result.attention is not None:
        last = result.attention[-1]
        weights = result.mask.astype(np.float64)
        row = last[0] if rollout_from == "cls" else (weights[:, None] * last).sum(0)
        scores[LAST_ATTENTION] = np.asarray(row, np.float64)
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
) -> dict[str, TokenCurves]:
    """Mean deletion and insertion AUC per ranking over ``texts`` (texts with fewer than 2 real
    tokens are skipped: nothing to rank)."""
    if not 0 <= baseline < (explainer.vocab or baseline + 1):
        raise InputError(f"--baseline-token {baseline}: not a row of the embedding table")
    rollout_from = str((explainer.meta.get("tokens") or {}).get("rollout_from") or "cls")
    rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[float, float, np.ndarray, np.ndarray]]] = {}
    for text in texts:
        result = explainer.explain(text)
        positions = real_positions(result, special)
        if positions.size < 2:
            continue
        for name, score in rankings(result, rollout_from, rng).items():
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
) -> dict[int, dict[str, float]]:
    """Mean Spearman correlation (over texts, real tokens) of each map with the original's after
    the top k parametric layers are re-initialized, k on a log scale up to all layers. ``export``
    turns a forward model into an explainer with the original's options and a run-time target;
    every variant explains the class the original predicts."""
    layers = parametric_layers(forward)
    original = export(forward)
    reference = [original.explain(text) for text in texts]
    result: dict[int, dict[str, float]] = {}
    for count in checkpoint_counts(len(layers), "log"):
        chosen = top_layers(layers, count)
        variant = export(randomized(forward, layers, chosen, default_randomizer(seed)))
        per_map: dict[str, list[float]] = {}
        for text, ref in zip(texts, reference, strict=True):
            got = variant.explain(text, target=ref.target)
            keep = real_positions(ref, special)
            for name, values in ref.maps.items():
                per_map.setdefault(name, []).append(spearman(values[keep], got.maps[name][keep]))
        result[count] = {name: float(np.nanmean(v)) for name, v in per_map.items()}
    return result


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


def write_report(curves: dict[str, TokenCurves], folder: Path, title: str) -> Path:
    """report.json, report.md (the table) and curves.png (mean curves, random dotted)."""
    from edgesal.eval.plots import curves as plot_curves

    folder.mkdir(parents=True, exist_ok=True)
    entries = {
        name: {
            "deletion_auc": c.deletion_auc,
            "insertion_auc": c.insertion_auc,
            "mean_curves": {"deletion": c.deletion.tolist(), "insertion": c.insertion.tolist()},
        }
        for name, c in curves.items()
    }
    (folder / "report.json").write_text(json.dumps({"title": title, "rankings": entries}, indent=1))
    (folder / "report.md").write_text(f"# {title}\n\n{markdown(curves, None)}\n")
    methods = {k: v for k, v in entries.items() if k != RANDOM}
    controls = {k: v for k, v in entries.items() if k == RANDOM}
    return plot_curves(methods, controls, ("deletion", "insertion"), folder / "curves.png", title)


def run_texts(args) -> int:
    """``edgesal eval MODEL --texts FILE --tokenizer tokenizer.json -o OUT``."""
    if not args.tokenizer:
        raise InputError("--texts needs --tokenizer tokenizer.json")
    explainer = TextExplainer(args.model, args.tokenizer)
    texts = read_lines(Path(args.texts), "--texts")
    if args.max_images:
        texts = texts[: args.max_images]
    baseline = default_baseline(explainer) if args.baseline_token is None else args.baseline_token
    curves = evaluate_texts(explainer, texts, baseline, special_ids(explainer), args.seed)
    for name, c in sorted(curves.items(), key=lambda kv: kv[1].deletion_auc):
        print(f"{name}: deletion_auc {c.deletion_auc:.3f}  insertion_auc {c.insertion_auc:.3f}")
    out = Path(args.output)
    write_report(curves, out, f"{Path(args.model).name}: {len(texts)} texts")
    print(f"wrote {out}/report.md, report.json and curves.png")
    return 0
