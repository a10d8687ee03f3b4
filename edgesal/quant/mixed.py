"""Sensitivity analysis and mixed precision: the fewest float nodes that meet the map budget.

Units are the nodes the QDQ quantizer made int8, in graph order, split into forward and
backward regions and each region into contiguous blocks. All measurements run the
:class:`~edgesal.quant.simulate.Simulator` on the tuning images (calibration images, never the
validation ones) and compare with the float maps.

1. If the all-int8 model meets the budget, nothing stays float.
2. Sensitivity: the map error with only one block in int8, for every block (the number reported
   for each node of the block).
3. Keep the most sensitive blocks in float: the shortest prefix of the blocks sorted by
   sensitivity that meets the budget (binary search).
4. Give back: try each kept block, least sensitive first, in int8 again; then bisect the blocks
   still kept, so single nodes that do not hurt return to int8 while evaluations last.

The error of a configuration is normalized by the budget, ``max((1 - rho) / (1 - rho_min),
(1 - iou) / (1 - iou_min))``: at most 1 means within budget. A tuning image whose top-1 class
flips (where the float model's decision is clear: top score ahead by ln 2) counts as a miss
whatever the means say, since its map explains another class: +1 each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgesal.eval.similarity import spearman, top_k_iou
from edgesal.quant.fidelity import TOP_FRACTION
from edgesal.quant.options import Budget, SearchOptions
from edgesal.quant.simulate import Simulator


@dataclass(frozen=True)
class Score:
    """Mean Spearman and top-10% IoU of one configuration over the tuning images, and on how
    many of them the top-1 class differs from the float model's (its map explains another
    class)."""

    spearman: float
    iou: float
    flips: int = 0

    def error(self, budget: Budget) -> float:
        """Map error relative to the budget (1: at the budget), plus 1 per flipped class."""
        return self.flips + max(
            (1.0 - self.spearman) / max(1e-9, 1.0 - budget.spearman),
            (1.0 - self.iou) / max(1e-9, 1.0 - budget.iou),
        )

    def acceptable(self, budget: Budget, margin: float = 0.0) -> bool:
        return self.flips == 0 and budget.met(self.spearman, self.iou, margin)


@dataclass(frozen=True)
class Block:
    """Contiguous quantized nodes of one region and what quantizing only them costs."""

    region: str  # "forward" | "backward"
    nodes: tuple[str, ...]
    score: Score | None = None


@dataclass
class Decision:
    """The nodes kept in float, why, and the measurements behind it."""

    kept: list[str]
    reasons: dict[str, str]
    blocks: list[Block]
    all_int8: Score
    chosen: Score
    evaluations: int
    log: list[str] = field(default_factory=list)


Evaluate = Callable[[set[str]], Score]
CLEAR_MARGIN = float(np.log(2.0))


def evaluator(
    sim: Simulator,
    feeds: Sequence[dict[str, np.ndarray]],
    reference: Sequence[tuple[np.ndarray, np.ndarray]],
    scores: str,
    saliency: str,
) -> Evaluate:
    """Score of a set of int8 nodes: the simulated outputs against the float (scores, map)."""

    def evaluate(quantized: set[str]) -> Score:
        return score_outputs(
            reference, [(o[scores], o[saliency]) for o in (sim.run(f, quantized) for f in feeds)]
        )

    return evaluate


def score_outputs(
    reference: Sequence[tuple[np.ndarray, np.ndarray]],
    outputs: Sequence[tuple[np.ndarray, np.ndarray]],
) -> Score:
    """Mean Spearman and IoU of the maps, and the count of top-1 disagreements on images where
    the float model's decision is clear (see :func:`clear_decision`)."""
    rho, iou, flips = [], [], 0
    for (want_scores, want), (got_scores, got) in zip(reference, outputs, strict=True):
        rho.append(spearman(want, got))
        iou.append(top_k_iou(want, got, TOP_FRACTION))
        if clear_decision(want_scores):
            flips += int(np.argmax(want_scores) != np.argmax(got_scores))
    return Score(float(np.mean(rho)), float(np.mean(iou)), flips)


def clear_decision(scores: np.ndarray) -> bool:
    """The top score beats the runner-up by at least ln 2 (twice the probability, for logits).

    Near-ties flip under any perturbation, so a flip there is not held against a configuration;
    a flip of a clear decision is.
    """
    flat = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    return flat.size < 2 or flat[-1] - flat[-2] >= CLEAR_MARGIN


def blocks_of(units: Sequence[str], backward: set[str], count: int) -> list[Block]:
    """Each region's units (graph order) cut into at most ``count`` contiguous blocks."""
    result = []
    for region in ("forward", "backward"):
        members = [u for u in units if (u in backward) == (region == "backward")]
        pieces = min(count, len(members))
        for k in range(pieces):
            part = members[k * len(members) // pieces : (k + 1) * len(members) // pieces]
            result.append(Block(region, tuple(part)))
    return result


def search(
    units: Sequence[str],
    backward_units: set[str],
    evaluate: Evaluate,
    budget: Budget,
    options: SearchOptions = SearchOptions(),
) -> Decision:
    """Choose the float nodes (see the module docstring)."""
    counter = _Counter(evaluate, options.max_evaluations)
    everything = set(units)
    all_int8 = counter(everything)
    log = [
        f"all int8: Spearman {all_int8.spearman:.3f}, IoU {all_int8.iou:.3f}, "
        f"{all_int8.flips} top-1 flip(s)"
    ]
    blocks = [
        Block(b.region, b.nodes, counter(set(b.nodes)))
        for b in blocks_of(units, backward_units, options.blocks)
    ]
    if all_int8.acceptable(budget, options.margin):
        return Decision([], {}, blocks, all_int8, all_int8, counter.count, log)
    ranked = sorted(blocks, key=lambda b: b.score.error(budget), reverse=True)

    def passes(kept: set[str]) -> Score | None:
        score = counter(everything - kept)
        return score if score.acceptable(budget, options.margin) else None

    k = _shortest_prefix(ranked, passes)
    kept_blocks = ranked[:k]
    kept = {n for b in kept_blocks for n in b.nodes}
    reasons = {
        n: f"{b.region} block sensitivity {b.score.error(budget):.2f} (only this block int8: "
        f"Spearman {b.score.spearman:.3f}, IoU {b.score.iou:.3f})"
        for b in kept_blocks
        for n in b.nodes
    }
    log.append(f"kept the {k} most sensitive of {len(blocks)} blocks")
    for block in reversed(kept_blocks):  # least sensitive first
        if counter.exhausted():
            break
        kept = _give_back(block.nodes, kept, passes, counter)
    chosen = counter(everything - kept) if kept else all_int8
    log.append(f"{len(kept)} node(s) float after giving back; {counter.count} evaluations")
    return Decision(
        sorted(kept, key=list(units).index),
        {n: r for n, r in reasons.items() if n in kept},
        blocks,
        all_int8,
        chosen,
        counter.count,
        log,
    )


def _shortest_prefix(ranked: list[Block], passes) -> int:
    """Smallest k such that keeping ranked[:k] float passes (k = len(ranked) always does)."""
    low, high = 1, len(ranked)
    while low < high:
        mid = (low + high) // 2
        if passes({n for b in ranked[:mid] for n in b.nodes}):
            high = mid
        else:
            low = mid + 1
    return low


def _give_back(nodes: Sequence[str], kept: set[str], passes, counter) -> set[str]:
    """Return to int8 as much of ``nodes`` as the budget allows, halving on failure."""
    if counter.exhausted() or not nodes:
        return kept
    trial = kept - set(nodes)
    if passes(trial):
        return trial
    if len(nodes) == 1:
        return kept
    half = len(nodes) // 2
    kept = _give_back(nodes[:half], kept, passes, counter)
    return _give_back(nodes[half:], kept, passes, counter)


class _Counter:
    """Counts evaluations, caches them by configuration, and refuses new ones past the cap."""

    def __init__(self, evaluate: Evaluate, cap: int):
        self.evaluate, self.cap, self.count = evaluate, cap, 0
        self.cache: dict[frozenset, Score] = {}

    def exhausted(self) -> bool:
        return self.count >= self.cap

    def __call__(self, quantized: set[str]) -> Score:
        key = frozenset(quantized)
        if key not in self.cache:
            self.count += 1
            self.cache[key] = self.evaluate(quantized)
        return self.cache[key]
