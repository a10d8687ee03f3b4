"""Every method: in-graph onnxruntime saliency vs the forward pass vs Captum 0.9 on PyTorch.

Same weights, same sample counts (IG 16 points, SmoothGrad 8 samples), one run, fixed threads,
medians in alternating blocks. Each saliency model is timed as the exported file and as
`edgesal run` loads it on the x86 CPU provider (masks rewritten,
edgesal.runtimes.backends.onnx_masks).
Usage: python benchmarks/bench_methods.py [--runs 20] [--threads 2] [--write]
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
from edgesal.bench import as_run_loads, interleaved_medians, session  # noqa: E402
from edgesal.export import ExportOptions, export_saliency  # noqa: E402
from edgesal.methods import MethodOptions  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="efficientnet_lite0")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
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
