"""Conv input-gradient candidates on onnxruntime CPU: forward ms, each candidate's backward ms.

The layers are the ones mobile networks are made of (docs/rules_conv.md). Candidates, each a
model dy -> dx:

- ``flip`` (stride 1 only): one Conv with the flipped, channel-swapped kernel, mirrored pads.
- ``zero_insert``: dy spread to stride 1 by a 1x1 depthwise ConvTranspose of ones, then flip.
- ``transpose``: ConvTranspose(dy, w), the textbook input gradient.
- ``phases`` (bench only): polyphase; input phase r (i = s*q + r) is one stride-1 Conv of dy with
  the flipped taps that reach it, and the s*s phases are interleaved by Concat on inner axes
  (the cheapest interleave onnxruntime has).
- ``phases+D2S`` (bench only): the phase Convs, Concat on channels (DCR order), DepthToSpace.
- ``merged`` (bench only): one Conv computing all s*s phases with sub-kernels zero-padded to a
  common window (channel order c*s*s + phase: CRD; a channel multiplier for depthwise), Split,
  inner Concat.

The first three are the strategies of edgesal/autodiff/rules/conv.py; the table marks the one its
``choose_strategy`` picks. Every candidate (and the engine's own emission) is checked against
ConvTranspose before it is timed. ``--folding`` prints the ops left in the engine's backward
graph after onnxruntime's basic optimizations (the weight Slice/Transpose should be gone).
``--models`` times whole zoo networks (forward vs forward + gradient) with strategy overrides;
``--profile`` adds their kernel time per op type, forward vs backward.

Usage: .venv/bin/python benchmarks/bench_rules.py [--threads 2 1] [--runs 300] [--folding]
       [--models mobilenet_v2 efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgesal.autodiff.engine import input_gradient
from edgesal.autodiff.rules import conv as rules
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo

OPSET = 17


@dataclass(frozen=True)
class Layer:
    """A square 2-D Conv layer, batch 1, symmetric pads."""

    name: str
    c: int
    m: int
    group: int
    k: int
    size: int
    stride: int
    pad: int

    def weight(self) -> np.ndarray:
        rng = np.random.default_rng(0)
        return rng.standard_normal((self.m, self.c // self.group, self.k, self.k)).astype("f")

    def out(self) -> int:
        return (self.size + 2 * self.pad - self.k) // self.stride + 1

    def phases(self) -> int:
        return -(-self.size // self.stride)

    def attrs(self) -> dict:
        return {"group": self.group, "strides": [self.stride] * 2, "pads": [self.pad] * 4}

    def spec(self) -> rules.ConvSpec:
        axis = rules.Axis(self.size, self.out(), self.k, self.stride, 1, self.pad)
        shape = (self.m, self.c // self.group, self.k, self.k)
        return rules.ConvSpec("w", shape, self.group, (axis, axis), np.dtype("float32"))


LAYERS = [
    Layer("depthwise 3x3, 96 ch, 112, s1", 96, 96, 96, 3, 112, 1, 1),
    Layer("depthwise 3x3, 96 ch, 112->56, s2", 96, 96, 96, 3, 112, 2, 1),
    Layer("depthwise 5x5, 144 ch, 56->28, s2", 144, 144, 144, 5, 56, 2, 2),
    Layer("dense 1x1, 96->24, 56", 96, 24, 1, 1, 56, 1, 0),
    Layer("dense 1x1, 24->144, 56", 24, 144, 1, 1, 56, 1, 0),
    Layer("dense 3x3, 32->32, 112, s1", 32, 32, 1, 3, 112, 1, 1),
    Layer("stem dense 3x3, 3->32, 224->112, s2", 3, 32, 1, 3, 224, 2, 1),
    Layer("ResNet stem dense 7x7, 3->64, 224->112, s2", 3, 64, 1, 7, 224, 2, 3),
    Layer("dense 3x3, 64->128, 56->28, s2", 64, 128, 1, 3, 56, 2, 1),
    Layer("grouped (4) 3x3, 64->64, 56->28, s2", 64, 64, 4, 3, 56, 2, 1),
    Layer("dense 1x1, 64->128, 56->28, s2", 64, 128, 1, 1, 56, 2, 0),
]


def session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    """A CPU session (all graph optimizations) with ``threads`` intra-op threads."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def time_sessions(sessions: dict[str, tuple], runs: int, warmup: int = 10) -> dict[str, list]:
    """Milliseconds of each (session, feeds) per run; runs are interleaved so drift hits all."""
    for sess, feeds in sessions.values():
        for _ in range(warmup):
            sess.run(None, feeds)
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(runs):
        for name, (sess, feeds) in sessions.items():
            start = time.perf_counter()
            sess.run(None, feeds)
            samples[name].append((time.perf_counter() - start) * 1e3)
    return samples


def _model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "bench", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def _value(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def forward_model(layer: Layer) -> onnx.ModelProto:
    node = helper.make_node("Conv", ["x", "w"], ["y"], **layer.attrs())
    x = _value("x", [1, layer.c, layer.size, layer.size])
    return _model([node], [x], [_value("y", None)], [numpy_helper.from_array(layer.weight(), "w")])


def _backward(layer: Layer, emit: Callable[[Builder, Layer], str]) -> onnx.ModelProto:
    """A model dy -> dx whose nodes come from ``emit(builder, layer)``."""
    dy = _value("dy", [1, layer.m, layer.out(), layer.out()])
    model = _model([], [dy], [], [numpy_helper.from_array(layer.weight(), "w")])
    dx = emit(Builder(model.graph, OPSET), layer)
    model.graph.output.append(_value(dx, [1, layer.c, layer.size, layer.size]))
    return model


def engine_model(layer: Layer) -> onnx.ModelProto:
    """What the engine emits for the layer, with the forward node removed (dy is an input)."""
    model = forward_model(layer)
    model.graph.input.append(_value("dy", [1, layer.m, layer.out(), layer.out()]))
    dx = input_gradient(
        model.graph, TensorInfo(model), Builder(model.graph, OPSET), {"y": "dy"}, "x"
    )
    del model.graph.node[0]
    del model.graph.input[0]
    del model.graph.output[:]
    model.graph.output.append(_value(dx, [1, layer.c, layer.size, layer.size]))
    return model


def strategy(name: str) -> Callable[[Builder, Layer], str]:
    return lambda b, layer: rules.conv_input_gradient(b, "dy", layer.spec(), name)


def _taps(layer: Layer, r: int) -> list[int]:
    """Kernel taps k that reach input phase r: i = s*q + r meets k at o = q - (k - r - pad)/s."""
    return [k for k in range(layer.k) if (k - r - layer.pad) % layer.stride == 0]


def _offset(layer: Layer, k: int, r: int) -> int:
    return (k - r - layer.pad) // layer.stride


def _swapped_weight(layer: Layer) -> np.ndarray:
    """[G*Mg, Cg, k, k] -> [G*Cg, Mg, k, k] (numpy: onnxruntime folds the in-graph form anyway)."""
    mg, cg = layer.m // layer.group, layer.c // layer.group
    w = layer.weight().reshape(layer.group, mg, cg, layer.k, layer.k).transpose(0, 2, 1, 3, 4)
    return w.reshape(layer.c, mg, layer.k, layer.k)


def _phase_convs(b: Builder, layer: Layer) -> dict[tuple[int, int], str]:
    """Phase (r1, r2) of dx over q in [0, ceil(size / s)): dy correlated with flipped taps."""
    w, q = _swapped_weight(layer), layer.phases()
    tiles = {}
    for rs in itertools.product(range(layer.stride), repeat=2):
        taps = [_taps(layer, r) for r in rs]
        begins = [_offset(layer, t[-1], r) for t, r in zip(taps, rs, strict=True)]
        ends = [q - layer.out() - p + len(t) - 1 for p, t in zip(begins, taps, strict=True)]
        kernel = np.ascontiguousarray(w[:, :, taps[0][::-1]][:, :, :, taps[1][::-1]])
        assert min(ends) == max(ends) or min(ends) >= 0, "square crops only"
        dy = _head(b, "dy", layer.out() + min(min(ends), 0), layer.out())
        pads = begins + [max(e, 0) for e in ends]
        tiles[rs] = b.Conv(dy, b.const(kernel, hint="phase_w"), group=layer.group, pads=pads)
    return tiles


def _interleave(b: Builder, tiles: dict[tuple[int, int], str], layer: Layer) -> str:
    """out[s*q1 + r1, s*q2 + r2] = tiles[r1, r2][q1, q2] by Concat on inner axes, then crop."""
    s, q = layer.stride, layer.phases()
    rows = []
    for r1 in range(s):
        cols = [b.Reshape(tiles[r1, r2], b.ints([0, 0, q, q, 1])) for r2 in range(s)]
        rows.append(b.Reshape(b.Concat(*cols, axis=4), b.ints([0, 0, q, 1, q * s])))
    dx = b.Reshape(b.Concat(*rows, axis=3), b.ints([0, 0, q * s, q * s]))
    return _crop(b, dx, layer)


def _crop(b: Builder, t: str, layer: Layer) -> str:
    """The interleaved phases cover ceil(size / s) * s rows and columns: keep ``size``."""
    return _head(b, t, layer.size, layer.phases() * layer.stride)


def _head(b: Builder, t: str, keep: int, have: int) -> str:
    """t[:, :, :keep, :keep] (nothing when keep == have)."""
    return t if keep == have else b.Slice(t, b.ints([0, 0]), b.ints([keep, keep]), b.ints([2, 3]))


def phases(b: Builder, layer: Layer) -> str:
    return _interleave(b, _phase_convs(b, layer), layer)


def phases_depth_to_space(b: Builder, layer: Layer) -> str:
    tiles = _phase_convs(b, layer)  # DCR: the phase is the outer channel index
    stacked = b.Concat(*[tiles[rs] for rs in sorted(tiles)], axis=1)
    return _crop(b, b.DepthToSpace(stacked, blocksize=layer.stride, mode="DCR"), layer)


def merged(b: Builder, layer: Layer) -> str:
    """All phases from one Conv: sub-kernels zero-padded to a common window."""
    s, q, w = layer.stride, layer.phases(), _swapped_weight(layer)
    offsets = [_offset(layer, k, r) for r in range(s) for k in _taps(layer, r)]
    top, window = max(offsets), max(offsets) - min(offsets) + 1
    sub = np.zeros((layer.c, s, s, w.shape[1], window, window), "f")  # CRD: channel, phase
    for r1, r2 in itertools.product(range(s), repeat=2):
        for k1, k2 in itertools.product(_taps(layer, r1), _taps(layer, r2)):
            u1, u2 = top - _offset(layer, k1, r1), top - _offset(layer, k2, r2)
            sub[:, r1, r2, :, u1, u2] = w[:, :, k1, k2]
    weight = b.const(sub.reshape(layer.c * s * s, -1, window, window), hint="merged_w")
    end = q - layer.out() - top + window - 1
    dy = _head(b, "dy", layer.out() + min(end, 0), layer.out())
    pads = [top, top, max(end, 0), max(end, 0)]
    out = b.Reshape(
        b.Conv(dy, weight, group=layer.group, pads=pads), b.ints([0, layer.c, -1, q, q])
    )
    parts = b.Split(out, axis=2, outputs=s * s)
    tiles = {
        rs: b.Reshape(p, b.ints([0, layer.c, q, q]))
        for rs, p in zip(itertools.product(range(s), repeat=2), parts, strict=True)
    }
    return _interleave(b, tiles, layer)


def candidates(layer: Layer) -> dict[str, onnx.ModelProto]:
    names = ["flip"] if layer.stride == 1 else ["zero_insert"]
    models = {name: _backward(layer, strategy(name)) for name in [*names, "transpose"]}
    if 1 < layer.stride <= layer.k:  # (the polyphase candidates need a tap in every phase)
        models["phases"] = _backward(layer, phases)
        models["phases+D2S"] = _backward(layer, phases_depth_to_space)
        models["merged"] = _backward(layer, merged)
    return models


def check_outputs(layer: Layer, models: dict[str, onnx.ModelProto]) -> None:
    dy = np.random.default_rng(1).standard_normal((1, layer.m, layer.out(), layer.out()))
    feeds = {"dy": dy.astype("f")}
    models = dict(models, engine=engine_model(layer))
    outs = {name: session(m, 2).run(None, feeds)[0] for name, m in models.items()}
    ref = outs["transpose"]
    for name, out in outs.items():
        err = float(np.abs(out - ref).max() / np.abs(ref).max())
        assert out.shape == ref.shape and err < 1e-5, (layer.name, name, out.shape, err)


def folded(model: onnx.ModelProto, path: str) -> str:
    """Ops left after onnxruntime's basic optimizations (which include constant folding)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = path
    ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(path).graph.node]
    return ", ".join(f"{op} x{ops.count(op)}" for op in sorted(set(ops)))


NAMES = ["flip", "zero_insert", "transpose", "phases", "phases+D2S", "merged"]
STATS = {"median": statistics.median, "min": min}


def _row(layer: Layer, threads: int, ms: dict[str, float]) -> str:
    fwd, pick = ms["forward"], rules.choose_strategy(layer.spec())
    cells = []
    for name in NAMES:
        text = f"{ms[name]:.3f} ({ms[name] / fwd:.1f})" if name in ms else "-"
        cells.append(f"**{text}**" if name == pick else text)
    return f"| {layer.name} | {threads} | {fwd:.3f} | " + " | ".join(cells) + " |"


def bench_layers(threads: list[int], runs: int) -> None:
    """One markdown table per statistic: ms (x forward) of every candidate on every layer."""
    rows: dict[str, list[str]] = {stat: [] for stat in STATS}
    for layer in LAYERS:
        models = candidates(layer)
        check_outputs(layer, models)
        rng = np.random.default_rng(2)
        x = {"x": rng.standard_normal((1, layer.c, layer.size, layer.size)).astype("f")}
        dy = {"dy": rng.standard_normal((1, layer.m, layer.out(), layer.out())).astype("f")}
        for n in threads:
            sessions = {"forward": (session(forward_model(layer), n), x)}
            sessions.update({name: (session(m, n), dy) for name, m in models.items()})
            samples = time_sessions(sessions, runs)
            for stat, fn in STATS.items():
                rows[stat].append(_row(layer, n, {k: fn(v) for k, v in samples.items()}))
            print(f"  {layer.name}, {n} thread(s): done", flush=True)
    for stat, lines in rows.items():
        print(f"\n{stat} of {runs} interleaved runs, ms (x forward); bold: the rule's pick\n")
        print("| layer | threads | forward | " + " | ".join(NAMES) + " |")
        print("|---|---|---|" + "---|" * len(NAMES))
        print("\n".join(lines))


def bench_models(names: list[str], threads: list[int], runs: int) -> None:
    """Whole zoo models: forward vs forward + vanilla gradient, per strategy override.

    A variant overrides the rule's choice (by monkeypatching ``choose_strategy``) for strided
    depthwise convs only, or for every conv (the textbook all-ConvTranspose gradient).
    """
    from edgesal import zoo  # (builds the networks from cached weights)

    variants = {
        "rule": None,
        "strided dw: transpose": lambda spec: "transpose" if _strided_dw(spec) else None,
        "all ConvTranspose": lambda spec: "transpose",
    }
    print("\n| model | threads | forward ms | " + " | ".join(variants) + " |")
    print("|---|---|---|" + "---|" * len(variants))
    for name in names:
        forward = zoo.build(name, progress=False)
        image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype("f")
        feeds = {forward.graph.input[0].name: image}
        models = {"forward": forward}
        models.update({v: _saliency(forward, s) for v, s in variants.items()})
        grads = [session(m, 1).run(None, feeds)[-1] for v, m in models.items() if v != "forward"]
        scale = float(np.abs(grads[0]).max())
        assert all(np.abs(g - grads[0]).max() <= 1e-4 * scale for g in grads), name
        for n in threads:
            sessions = {v: (session(m, n), feeds) for v, m in models.items()}
            ms = {k: statistics.median(v) for k, v in time_sessions(sessions, runs).items()}
            cells = [f"{ms[v]:.2f} ({ms[v] / ms['forward']:.2f}x)" for v in variants]
            print(f"| {name} | {n} | {ms['forward']:.2f} | " + " | ".join(cells) + " |")


def profile_models(names: list[str], runs: int) -> None:
    """Kernel ms per op type (onnxruntime profiler, 1 thread), forward vs backward nodes.

    Backward nodes are those the engine named ``grad/...``; Reorder* are the NCHWc layout
    conversions onnxruntime inserts around its blocked Conv kernels.
    """
    from edgesal import zoo

    for name in names:
        model = _saliency(zoo.build(name, progress=False), None)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.enable_profiling = True
        with tempfile.TemporaryDirectory() as tmp:
            opts.profile_file_prefix = f"{tmp}/profile"
            sess = ort.InferenceSession(
                model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
            )
            image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype("f")
            for _ in range(runs):
                sess.run(None, {model.graph.input[0].name: image})
            with open(sess.end_profiling()) as f:
                events = json.load(f)
        per_node: dict[tuple[str, str], list[float]] = {}
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                per_node.setdefault((e["name"], e["args"]["op_name"]), []).append(e["dur"] / 1e3)
        totals: dict[tuple[str, str], float] = {}
        for (node, op), durations in per_node.items():
            side = "backward" if node.startswith("grad") else "forward"
            side = "layout" if op.startswith("Reorder") else side
            totals[side, op] = totals.get((side, op), 0.0) + statistics.median(durations)
        print(f"\n{name}: kernel ms per op type (median per node, summed), 1 thread\n")
        print("| side | op | ms |\n|---|---|---|")
        for (side, op), ms in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"| {side} | {op} | {ms:.3f} |")


def _strided_dw(spec: rules.ConvSpec) -> bool:
    return spec.depthwise and any(a.stride > 1 for a in spec.axes)


def _saliency(forward: onnx.ModelProto, override=None) -> onnx.ModelProto:
    """forward + d(logit 0)/d(image) as a second output, built by the engine."""
    model = onnx.ModelProto.FromString(forward.SerializeToString())
    info, b = TensorInfo(model), Builder(model.graph, OPSET)
    logits, image = model.graph.output[0].name, model.graph.input[0].name
    seed = np.zeros(info.shape(logits), "f")
    seed[0, 0] = 1
    pick = rules.choose_strategy
    if override:
        rules.choose_strategy = lambda spec: override(spec) or pick(spec)
    try:
        grad = input_gradient(model.graph, info, b, {logits: b.const(seed)}, image)
    finally:
        rules.choose_strategy = pick
    model.graph.output.append(_value(grad, info.shape(image)))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--folding", action="store_true", help="print ops left after folding")
    parser.add_argument("--models", nargs="*", default=[], help="zoo models to time whole")
    parser.add_argument("--profile", action="store_true", help="per-op kernel ms of --models")
    args = parser.parse_args()
    ort.set_default_logger_severity(3)
    print(f"onnxruntime {ort.__version__}, opset {OPSET}, load average {os.getloadavg()}")
    bench_layers(args.threads, args.runs)
    if args.folding:
        print("\nops of the engine's backward graph after onnxruntime's basic optimizations:\n")
        with tempfile.TemporaryDirectory() as tmp:
            for layer in LAYERS:
                print(f"- {layer.name}: {folded(engine_model(layer), f'{tmp}/folded.onnx')}")
    if args.models:
        bench_models(args.models, args.threads, max(args.runs // 10, 20))
    if args.profile:
        profile_models(args.models, max(args.runs // 10, 20))
    print(f"\nload average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
