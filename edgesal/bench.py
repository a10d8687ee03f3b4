"""Side-by-side latency of the forward pass and saliency models on onnxruntime (medians)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
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


def time_sessions(
    sessions: dict[str, ort.InferenceSession], runs: int, warmup: int = 5, block: int = 5
) -> dict[str, float]:
    """Median milliseconds per session, timed in alternating blocks of consecutive runs: blocks
    spread drift over all sessions, and staying on one session for a block keeps another
    session's spinning threads from competing for the cores."""
    feeds = {name: random_feeds(s) for name, s in sessions.items()}
    for name, s in sessions.items():
        for _ in range(warmup):
            s.run(None, feeds[name])
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    while any(len(v) < runs for v in samples.values()):
        for name, s in sessions.items():
            s.run(None, feeds[name])  # untimed: absorbs the switch from the previous session
            for _ in range(min(block, runs - len(samples[name]))):
                start = time.perf_counter()
                s.run(None, feeds[name])
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}


def resolve_model(model: str) -> tuple[str, onnx.ModelProto]:
    """An ONNX path, or a zoo model name built on the fly."""
    if Path(model).is_file():
        return Path(model).stem, load_model(model)
    from edgesal import zoo

    return model, zoo.build(model, progress=False)


def bench_model(model: str, methods: list[str], threads: int, runs: int) -> list[dict]:
    """Forward vs each method's saliency model: median ms and ratio to the forward pass."""
    name, forward = resolve_model(model)
    sessions = {"forward": session(forward, threads)}
    for method in methods:
        exported = export_saliency(forward, ExportOptions(method=method))
        sessions[method] = session(exported, threads)
    medians = time_sessions(sessions, runs)
    base = medians["forward"]
    return [
        {
            "model": name,
            "variant": variant,
            "threads": threads,
            "median_ms": round(ms, 3),
            "ratio_to_forward": round(ms / base, 3),
        }
        for variant, ms in medians.items()
    ]


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
