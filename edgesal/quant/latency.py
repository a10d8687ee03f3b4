"""Where the time goes: per-node kernel times from onnxruntime's profiler, end-to-end medians.

onnxruntime renames nodes it fuses or re-lays out (``<name>_token_12``, ``<name>_nchwc``; a
float Conv fused with its Clip takes the Clip's name), so profiled names are mapped back to the
graph's node names by stripping those suffixes.
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
    """Mean kernel milliseconds per graph node (fused kernels credited to the named node)."""
    names = {n.name for n in model.graph.node}
    with tempfile.TemporaryDirectory() as folder:
        sess = session(model, threads, os.path.join(folder, "profile"))
        sess.run(None, feed)  # warm-up, not profiled separately but averaged out below
        for _ in range(runs):
            sess.run(None, feed)
        path = sess.end_profiling()
        events = json.loads(open(path).read())
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        name = _SUFFIXES.sub("", event["name"])
        totals[name if name in names else "(runtime-inserted)"] += event["dur"] / 1000.0
    return {name: total / (runs + 1) for name, total in totals.items()}


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
