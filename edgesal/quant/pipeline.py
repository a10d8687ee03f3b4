"""``quantize``: calibrate, decide the float nodes, build the int8 model, measure its maps."""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from edgesal import metadata
from edgesal.errors import InputError
from edgesal.graph.idioms.forms import portable
from edgesal.onnx_io import load_model
from edgesal.quant import calibrate, latency, qdq, seed
from edgesal.quant.fidelity import ImageFidelity, compare
from edgesal.quant.graph import SaliencyGraph, describe
from edgesal.quant.images import ImageSplit, Sample, load_split, model_inputs
from edgesal.quant.mixed import Decision, evaluator, score_outputs, search
from edgesal.quant.options import Budget, QuantOptions
from edgesal.quant.prepare import compared_bounds, masked_products, prepare
from edgesal.quant.report import KeptNode, Report
from edgesal.quant.simulate import Simulator
from edgesal.runtimes.contract import Preprocess

MAX_FALLBACKS = 3


@dataclass
class QuantResult:
    """The int8 model, the report, and the decisions a TFLite export reuses."""

    model: onnx.ModelProto
    report: Report
    prepared: onnx.ModelProto  # float, rewritten, seed-scaled: what was quantized
    ranges: dict[str, calibrate.TensorRange]
    kept: list[str]
    graph: SaliencyGraph
    source: onnx.ModelProto | None = None  # the float saliency model
    preprocess: Preprocess | None = None
    samples: dict[str, list[Sample]] = field(default_factory=dict)  # split -> measured images


def quantize(
    model: onnx.ModelProto | str | Path,
    options: QuantOptions | None = None,
    split: ImageSplit | None = None,
) -> QuantResult:
    """Quantize an edgesal saliency model to int8 QDQ under ``options.budget``."""
    options = options or QuantOptions()
    say = _progress(options.progress)
    where = str(model) if isinstance(model, str | Path) else "model"
    model = load_model(model) if isinstance(model, str | Path) else copy.deepcopy(model)
    model = portable(model)  # int8 cannot hold the --for onnxruntime-cpu masks (slope 2**100)
    graph = describe(model, where)
    meta = metadata.read(model)
    pre = _preprocess(meta, where)
    split = split or load_split(
        options.calib, options.validation, options.augment, options.max_frames
    )
    calibration = split.calibration[: options.max_calibration]
    feeds = [{graph.image: x} for x in model_inputs(calibration, pre)]

    say(f"calibrating on {len(feeds)} images ({split.source})")
    prepared = prepare(model)
    prepared_graph = describe(prepared, where)
    scale = seed.SeedScale(1.0, 1, "none", "not rescaled (disabled)")
    if options.seed_rescale:
        probe = calibrate.collect(prepared, prepared_graph, feeds[:2], detailed=False)
        magnitudes = {n: max(abs(probe.low[n]), abs(probe.high[n])) for n in probe.low}
        scale = seed.choose(prepared_graph, magnitudes, meta)
        seed.apply(prepared, prepared_graph, scale)
        prepared_graph = describe(prepared, where)
    stats = calibrate.collect(prepared, prepared_graph, feeds)
    ranges = calibrate.choose_ranges(stats, prepared_graph, options.gradient_range)
    calibrate.widen(ranges, compared_bounds(prepared))
    calibrate.tie(ranges, masked_products(prepared))
    all_int8 = qdq.build(prepared, ranges)

    originals = [s for s in calibration if s.origin is None] or calibration
    tune_samples = _spread(originals, options.tune)
    tune_feeds = [{graph.image: x} for x in model_inputs(tune_samples, pre)]
    reference = latency.session(model, options.threads, arena=False)
    float_outputs = [_outputs(reference, f, graph) for f in tune_feeds]
    say(f"searching for float nodes on {len(tune_feeds)} tuning images")
    sim = Simulator(all_int8, prepared, options.threads)
    backward_units = _backward_units(prepared, prepared_graph, sim.units)
    decision = search(
        sim.units,
        backward_units,
        evaluator(sim, tune_feeds, float_outputs, graph.scores, graph.saliency),
        options.budget,
        options.search,
    )
    final, decision, log = _verified(
        prepared, ranges, decision, all_int8, tune_feeds, float_outputs, graph, options
    )
    final = _stamped(final, model, decision.kept, scale, options.budget)
    say(f"{len(decision.kept)} nodes float; measuring the maps")

    samples = {"calibration": originals, "validation": split.validation}
    quantized = latency.session(final, options.threads, arena=False)
    rows = fidelity_rows(
        model, lambda feed: _outputs(quantized, feed, graph), graph, pre, samples, options.threads
    )
    report = Report(
        model=where,
        method=graph.method,
        output_format="onnx-qdq-int8",
        budget=options.budget,
        images=split.summary() | {"calibration_used": len(calibration)},
        seed_scale=asdict(scale),
        gradient_ranges=dict(
            Counter(r.method.split(",")[0].split(" ")[0] for r in ranges.values() if r.backward)
        ),
        quantized_nodes=len(qdq.quantized_nodes(final)),
        kept=_kept_nodes(prepared, decision, backward_units),
        blocks=[_block_dict(b, options.budget) for b in decision.blocks],
        search_log=decision.log + log,
        rows=rows,
    )
    if options.latency_runs and decision.kept:
        say("profiling the float nodes")
        costs = latency.kept_costs(
            final, all_int8, decision.kept, tune_feeds[0], options.latency_runs, options.threads
        )
        for kept in report.kept:
            for key, value in costs[kept.node].items():
                setattr(kept, key, value)
    return QuantResult(final, report, prepared, ranges, decision.kept, graph, model, pre, samples)


def _progress(callback: Callable[[str], None] | None) -> Callable[[str], None]:
    start = time.perf_counter()

    def say(text: str) -> None:
        if callback is not None:
            callback(f"[{time.perf_counter() - start:6.1f} s] {text}")

    return say


def _spread(samples: list[Sample], count: int) -> list[Sample]:
    """``count`` samples spread evenly over the list (the tuning images)."""
    if count >= len(samples):
        return list(samples)
    picks = np.linspace(0, len(samples) - 1, max(count, 1)).round().astype(int)
    return [samples[i] for i in dict.fromkeys(picks.tolist())]


def _preprocess(meta: dict, where: str) -> Preprocess:
    pre = metadata.preprocess(meta, where)
    if pre is not None:
        return pre
    raise InputError(
        f"{where}: no edgesal.preprocess metadata, so calibration images cannot be prepared "
        "as the model expects; export from an ONNX model that carries it (edgesal zoo models do)"
    )


def _outputs(session, feed, graph: SaliencyGraph) -> tuple[np.ndarray, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(None, feed), strict=True))
    return values[graph.scores], values[graph.saliency]


def _backward_units(model: onnx.ModelProto, graph: SaliencyGraph, units) -> set[str]:
    outputs = {n.name: n.output for n in model.graph.node}
    return {u for u in units if any(graph.is_backward(o) for o in outputs.get(u, ()))}


def _verified(prepared, ranges, decision: Decision, all_int8, feeds, reference, graph, options):
    """Build the real QDQ model for the decision and check it on the tuning images; while it
    misses the budget, keep the next most sensitive block float as well."""
    log = []
    ranked = sorted(decision.blocks, key=lambda b: b.score.error(options.budget), reverse=True)
    kept = list(decision.kept)
    for attempt in range(MAX_FALLBACKS + 1):
        model = qdq.build(prepared, ranges, kept) if kept else all_int8
        session = latency.session(model, options.threads, arena=False)
        score = score_outputs(reference, [_outputs(session, f, graph) for f in feeds])
        log.append(
            f"int8 model on tuning images: Spearman {score.spearman:.3f}, IoU {score.iou:.3f}, "
            f"{score.flips} top-1 flip(s)"
        )
        if score.acceptable(options.budget) or attempt == MAX_FALLBACKS:
            break
        extra = next((b for b in ranked if not set(b.nodes) <= set(kept)), None)
        if extra is None:
            break
        for node in extra.nodes:
            if node not in kept:
                kept.append(node)
                decision.reasons[node] = (
                    f"fallback: the int8 model missed the budget on the tuning images; "
                    f"{extra.region} block sensitivity {extra.score.error(options.budget):.2f}"
                )
    decision.kept = kept
    return model, decision, log


def _stamped(final, original, kept, scale, budget) -> onnx.ModelProto:
    """The QDQ model with the original metadata and the quantization decisions."""
    final = copy.deepcopy(final)
    keep = {p.key: p.value for p in original.metadata_props}
    del final.metadata_props[:]
    for key, value in keep.items():
        final.metadata_props.add(key=key, value=value)
    metadata.write(
        final,
        {
            "quant.format": "qdq-int8",
            "quant.kept_float": list(kept),
            "quant.seed_scale": scale.factor,
            "quant.budget": asdict(budget),
        },
    )
    return final


def fidelity_rows(
    model: onnx.ModelProto,
    quantized: Callable[[dict], tuple[np.ndarray, np.ndarray]],
    graph: SaliencyGraph,
    pre: Preprocess,
    samples: dict[str, list[Sample]],
    threads: int,
) -> list[ImageFidelity]:
    """One row per image of each split: the float model (onnxruntime) against ``quantized``
    (feed -> scores, map: the int8 model on onnxruntime or on a TFLite interpreter)."""
    reference = latency.session(model, threads, arena=False)
    rows: list[ImageFidelity] = []
    for split, items in samples.items():
        for sample, x in zip(items, model_inputs(items, pre), strict=True):
            feed = {graph.image: x}
            (fs, fm), (qs, qm) = _outputs(reference, feed, graph), quantized(feed)
            rows.append(compare(sample.name, split, fm, qm, fs, qs))
    return rows


def _kept_nodes(model, decision: Decision, backward_units) -> list[KeptNode]:
    ops = {n.name: n.op_type for n in model.graph.node}
    return [
        KeptNode(
            node=name,
            op_type=ops.get(name, "?"),
            region="backward" if name in backward_units else "forward",
            reason=decision.reasons.get(name, ""),
        )
        for name in decision.kept
    ]


def _block_dict(block, budget: Budget) -> dict:
    return {
        "region": block.region,
        "first": block.nodes[0],
        "last": block.nodes[-1],
        "nodes": len(block.nodes),
        "spearman": block.score.spearman,
        "iou": block.score.iou,
        "sensitivity": block.score.error(budget),
    }
