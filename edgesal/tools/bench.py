"""Side-by-side latency of the forward pass and saliency models on onnxruntime (medians)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgesal.export import ExportOptions, export_saliency
from edgesal.onnx_io import load_model


def session(model: onnx.ModelProto | str, threads: int) -> ort.InferenceSession:
    """A CPU session with a fixed number of intra-op threads and one inter-op thread."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def random_feeds(sess: ort.InferenceSession, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs matching the session's input types (int64 'target' gets class 0)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        if "uint8" in inp.type:
            feeds[inp.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif "int" in inp.type:
            feeds[inp.name] = np.zeros(shape, dtype=np.int64)
        else:
            feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def interleaved_medians(
    fns: dict[str, Callable[[], object]],
    runs: int,
    warmup: int = 5,
    clock: Callable[[], float] = time.perf_counter,
    block: int = 5,
    settle: float = 0.3,
) -> dict[str, float]:
    """Median ms of each callable over ``runs`` calls, taken in blocks of ``block`` consecutive
    calls that alternate between the callables: alternating blocks spread machine drift over all
    of them. Before each block the machine settles for ``settle`` seconds and one untimed call
    is made: worker threads of the previous runtime keep spinning after their run (OpenMP's
    block time is 200 ms), and without the pause they stole the cores of the next one
    (alternating single calls inflated onnxruntime times about 2x here).

    ``clock`` is wall time by default; ``time.process_time`` gives CPU time, which a loaded
    machine distorts less."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    while any(len(v) < runs for v in samples.values()):
        for name, fn in fns.items():
            time.sleep(settle)
            fn()
            for _ in range(min(block, runs - len(samples[name]))):
                start = clock()
                fn()
                samples[name].append((clock() - start) * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}


def time_sessions(sessions: dict[str, ort.InferenceSession], runs: int) -> dict[str, float]:
    """Median milliseconds per session on random inputs, by :func:`interleaved_medians`."""
    calls = {}
    for name, sess in sessions.items():
        feeds = random_feeds(sess)
        calls[name] = lambda sess=sess, feeds=feeds: sess.run(None, feeds)
    return interleaved_medians(calls, runs)


def resolve_model(model: str) -> tuple[str, onnx.ModelProto]:
    """An ONNX path, or a zoo model name built on the fly."""
    if Path(model).is_file():
        return Path(model).stem, load_model(model)
    from edgesal import zoo

    return model, zoo.build(model, progress=False)


def bench_model(
    model: str, methods: list[str], threads: int, runs: int, profile: bool = False
) -> list[dict]:
    """Forward vs each method's saliency model: median ms and ratio to the forward pass. Where
    the device runtime loads a model in another form (``edgesal run`` on an x86 CPU), that form
    is timed too, as ``METHOD (edgesal run)``. With ``profile`` each method's row also holds
    ``profile``: :func:`profile_model` of that form."""
    name, forward = resolve_model(model)
    sessions = {"forward": session(forward, threads)}
    loaded_forms = {}
    for method in methods:
        raw = export_saliency(forward, ExportOptions(method=method)).SerializeToString()
        loaded_forms[method] = as_run_loads(raw)
        sessions[method] = session(raw, threads)
        if loaded_forms[method] != raw:
            sessions[f"{method} (edgesal run)"] = session(loaded_forms[method], threads)
    medians = time_sessions(sessions, runs)
    base = medians["forward"]
    rows = [
        {
            "model": name,
            "variant": variant,
            "threads": threads,
            "median_ms": round(ms, 3),
            "ratio_to_forward": round(ms / base, 3),
        }
        for variant, ms in medians.items()
    ]
    for row in rows if profile else []:
        if row["variant"] in loaded_forms:
            row["profile"] = profile_model(loaded_forms[row["variant"]], threads, runs)
    return rows


def as_run_loads(raw: bytes) -> bytes:
    """A serialized model in the form the device runtime's CPU session loads it."""
    from edgesal.runtimes.backends.onnxrt import for_providers

    return for_providers(raw, ["CPUExecutionProvider"])


def profile_model(model: bytes, threads: int, runs: int = 50) -> list[dict]:
    """Where one call of the serialized ``model`` spends its time: onnxruntime's profiler,
    kernel ms per call by part and operator type. Parts: ``forward`` (the model's own nodes),
    ``gradient`` (the nodes edgesal appended, their names start with ``edgesal/``) and
    ``layout`` (the reorders onnxruntime inserts)."""
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        feeds = random_feeds(sess)
        for _ in range(runs):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    return _breakdown(events, runs)


def _breakdown(events: list[dict], runs: int) -> list[dict]:
    """Kernel time per call grouped by (part, operator type), largest first, with shares."""
    totals: dict[tuple[str, str], list[float]] = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        op = event["args"]["op_name"]
        part = (
            "layout"
            if op in ("ReorderInput", "ReorderOutput")
            else ("gradient" if event["name"].startswith("edgesal/") else "forward")
        )
        entry = totals.setdefault((part, op), [0.0, 0])
        entry[0] += event["dur"] / 1e3 / runs
        entry[1] += 1
    whole = sum(ms for ms, _ in totals.values()) or 1.0
    rows = [
        {"part": part, "op": op, "nodes": count // runs, "ms": ms, "share": ms / whole}
        for (part, op), (ms, count) in totals.items()
    ]
    return sorted(rows, key=lambda r: -r["ms"])


def format_profile(rows: list[dict], top: int = 12) -> str:
    """Markdown table of :func:`profile_model` rows; the smallest are summed as ``other``."""
    lines = ["| part | operator | nodes | kernel ms | share |", "|---|---|---|---|---|"]
    shown, rest = rows[:top], rows[top:]
    for r in shown:
        lines.append(
            f"| {r['part']} | {r['op']} | {r['nodes']} | {r['ms']:.3f} | {r['share']:.0%} |"
        )
    if rest:
        ms, share = sum(r["ms"] for r in rest), sum(r["share"] for r in rest)
        lines.append(f"| other | {len(rest)} types | | {ms:.3f} | {share:.0%} |")
    lines.append(f"| all | | | {sum(r['ms'] for r in rows):.3f} | 100% |")
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    """Markdown table of bench rows."""
    lines = ["| model | variant | threads | median ms | x forward |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['threads']} | {r['median_ms']:.2f} | "
            f"{r['ratio_to_forward']:.2f} |"
        )
    return "\n".join(lines)


# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child of a big parent would
# report the parent's peak.
PEAK_RSS_KB = "int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))"

_RSS_SCRIPT = """
import sys, numpy as np, onnxruntime as ort
opts = ort.SessionOptions(); opts.intra_op_num_threads = int(sys.argv[2])
s = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
feeds = {}
for i in s.get_inputs():
    shape = [d if isinstance(d, int) else 1 for d in i.shape]
    kind = np.uint8 if "uint8" in i.type else (np.int64 if "int" in i.type else np.float32)
    feeds[i.name] = np.zeros(shape, kind)
for _ in range(int(sys.argv[3])):
    s.run(None, feeds)
print(PEAK_RSS)
""".replace("PEAK_RSS", PEAK_RSS_KB)


def peak_rss_mb(model: onnx.ModelProto, frames: int = 100, threads: int = 2) -> float:
    """Peak RSS (MB) of a fresh process that loads ``model`` and runs ``frames`` inferences."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, str(path))
        out = subprocess.run(
            [sys.executable, "-c", _RSS_SCRIPT, str(path), str(threads), str(frames)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return int(out.strip().splitlines()[-1]) / 1024.0
