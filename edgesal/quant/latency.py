"""Where the time goes: per-node kernel times from onnxruntime's profiler, end-to-end medians.

onnxruntime renames nodes it fuses or re-lays out, so profiled names are mapped back to the
graph's node names: suffixes are stripped (``<name>_token_12``), and a kernel named after the
tensor it writes (the NCHWc layout names its kernels ``<output>_nchwc``: a float Conv fused with
its BatchNormalization and Clip is profiled as ``<clip output>_nchwc``) is credited to the node
of the kernel's op type that heads the fused chain ending in that tensor (the Conv).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx
import onnxruntime as ort

_SUFFIXES = re.compile(r"(_token_\d+|_nchwc|_kernel_time)+$")


def session(
    model: onnx.ModelProto, threads: int = 2, profile: str | None = None, arena: bool = True
):
    """A CPU session with ``threads`` intra-op threads (optionally profiling to ``profile``;
    ``arena=False`` returns memory after each run, for the measuring runs of large models)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = arena
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])


def node_times(
    model: onnx.ModelProto, feed: dict[str, np.ndarray], runs: int = 10, threads: int = 2
) -> dict[str, float]:
    """Mean kernel milliseconds per graph node over ``runs`` (>= 1) steady-state calls (a fused
    kernel credited to the node heading it)."""
    names = {n.name for n in model.graph.node}
    producers = {out: n for n in model.graph.node for out in n.output}
    with tempfile.TemporaryDirectory() as folder:
        sess = session(model, threads, os.path.join(folder, "profile"))
        for _ in range(runs + 1):  # the first run warms up and is left out below
            sess.run(None, feed)
        path = sess.end_profiling()
        events = json.loads(open(path).read())
    warm_up_end = _first_run_end(events)
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        if event["ts"] < warm_up_end:
            continue
        name = _SUFFIXES.sub("", event["name"])
        op = event.get("args", {}).get("op_name", "")
        totals[_owner(name, op, names, producers)] += event["dur"] / 1000.0
    return {name: total / runs for name, total in totals.items()}


def _first_run_end(events: list[dict]) -> float:
    """When the first profiled ``model_run`` ended: its kernels pay first-call costs (allocations,
    weight packing) that a steady-state call does not."""
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if not runs:
        raise RuntimeError("onnxruntime's profile has no model_run events")
    first = min(runs, key=lambda e: e["ts"])
    return first["ts"] + first["dur"]


def medians(
    models: dict[str, onnx.ModelProto], feed: dict[str, np.ndarray], runs: int, threads: int = 2
) -> dict[str, float]:
    """Median milliseconds of each model, run round-robin so machine drift hits all alike."""
    sessions = {key: session(m, threads) for key, m in models.items()}
    for sess in sessions.values():
        for _ in range(3):
            sess.run(None, feed)
    samples: dict[str, list[float]] = {key: [] for key in sessions}
    for _ in range(runs):
        for key, sess in sessions.items():
            start = time.perf_counter()
            sess.run(None, feed)
            samples[key].append((time.perf_counter() - start) * 1e3)
    return {key: statistics.median(v) for key, v in samples.items()}


def kept_costs(
    final: onnx.ModelProto,
    all_int8: onnx.ModelProto,
    kept: Iterable[str],
    feed: dict[str, np.ndarray],
    runs: int = 10,
    threads: int = 2,
) -> dict[str, dict[str, float]]:
    """For each kept node: its float kernel time, its int8 kernel time in the all-int8 model,
    and the difference (the latency its float precision costs)."""
    float_times = node_times(final, feed, runs, threads)
    int8_times = node_times(all_int8, feed, runs, threads)
    costs = {}
    for name in kept:
        as_float = float_times.get(name, 0.0)
        as_int8 = int8_times.get(name, 0.0)
        costs[name] = {"float_ms": as_float, "int8_ms": as_int8, "cost_ms": as_float - as_int8}
    return costs


_FUSED_CHAIN = 4  # nodes walked back from a fused kernel's output (Conv-BN-Clip-Add is 4)


def _owner(name: str, op: str, names: set[str], producers: dict) -> str:
    """The graph node a profiled kernel belongs to (see the module docstring)."""
    if name in names:
        return name
    writer = node = producers.get(name)
    for _ in range(_FUSED_CHAIN):
        if node is None or op in (node.op_type, "Fused" + node.op_type):
            break
        node = producers.get(node.input[0]) if node.input else None
    else:
        node = None
    if node is None:  # no node of the kernel's op type upstream: the tensor's writer
        node = writer
    return node.name if node is not None and node.name else "(runtime-inserted)"
