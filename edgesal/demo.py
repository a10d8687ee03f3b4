"""``make demo``: zoo model -> saliency export -> real photos -> overlays and a JSON summary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import onnx

from edgesal import metadata, zoo
from edgesal.bench import session
from edgesal.export import ExportOptions, export_saliency, save
from edgesal.imaging import center_crop, overlay, softmax, to_input


def run_demo(out: str | Path, models: list[str], methods: list[str], threads: int = 2) -> dict:
    """Write ``<model>.<method>.sal.onnx``, per-photo overlay PNGs and ``summary.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    photos = zoo.photos()
    summary: dict = {"photos": sorted(photos), "models": {}}
    for name in models:
        forward = zoo.build(name)
        meta = metadata.read(forward)
        pre = metadata.Preprocess(**meta["preprocess"])
        labels = meta["labels"]
        summary["models"][name] = {}
        for method in methods:
            exported = export_saliency(forward, ExportOptions(method=method))
            path = out / f"{name}.{method}.sal.onnx"
            save(exported, path)
            summary["models"][name][method] = _run_on_photos(
                exported, photos, pre, labels, out / name / method, threads
            )
            summary["models"][name][method]["model_file"] = str(path)
            print(f"{name} {method}: overlays in {out / name / method}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"summary: {out / 'summary.json'}")
    return summary


def _run_on_photos(model: onnx.ModelProto, photos: dict, pre, labels, folder: Path, threads: int):
    folder.mkdir(parents=True, exist_ok=True)
    sess = session(model, threads)
    input_name = sess.get_inputs()[0].name
    outputs = [o.name for o in sess.get_outputs()]
    results, timings = {}, []
    for photo, rgb in sorted(photos.items()):
        crop = center_crop(rgb, pre)
        feeds = {input_name: to_input(crop, pre)}
        sess.run(None, feeds)  # warm-up so timings show steady state
        start = time.perf_counter()
        values = dict(zip(outputs, sess.run(None, feeds), strict=True))
        timings.append((time.perf_counter() - start) * 1e3)
        probs = softmax(values[outputs[0]][0])
        top5 = np.argsort(probs)[::-1][:5]
        panel = np.hstack(
            [cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), overlay(crop, values["saliency"][0])]
        )
        cv2.imwrite(str(folder / f"{photo}.png"), panel)
        results[photo] = {
            "top5": [
                {"class": int(i), "label": labels[i], "prob": round(float(probs[i]), 4)}
                for i in top5
            ],
            "latency_ms": round(timings[-1], 2),
            "overlay": str(folder / f"{photo}.png"),
        }
    return {"photos": results, "median_latency_ms": round(float(np.median(timings)), 2)}
