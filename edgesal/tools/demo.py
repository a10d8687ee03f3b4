"""``make demo``: zoo model -> saliency export -> real photos -> overlays and a JSON summary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import onnx

from edgesal import metadata, zoo
from edgesal.eval.model import inspect
from edgesal.export import ExportOptions, export_saliency, save
from edgesal.imaging import overlay, softmax
from edgesal.runtimes.contract import Preprocess, crop_tensor, rgb_crop
from edgesal.tools.bench import session


def run_demo(out: str | Path, models: list[str], methods: list[str], threads: int = 2) -> dict:
    """Per model: one saliency model holding every method (``<model>.sal.onnx``), one labelled
    panel per photo (the crop, then one overlay per method) and ``summary.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    photos = zoo.photos()
    summary: dict = {"photos": sorted(photos), "methods": methods, "models": {}}
    for name in models:
        forward = zoo.build(name)
        meta = metadata.read(forward)
        pre = metadata.preprocess(meta, name)
        options = ExportOptions(methods=methods, normalize="percentile")
        exported = export_saliency(forward, options)
        path = out / f"{name}.sal.onnx"
        save(exported, path)
        result = _run_on_photos(exported, photos, pre, meta["labels"], out / name, threads)
        summary["models"][name] = {"model_file": str(path), **result}
        print(f"{name}: overlays in {out / name}/ (crop, then {', '.join(methods)})")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"summary: {out / 'summary.json'}")
    return summary


def _run_on_photos(
    model: onnx.ModelProto, photos: dict, pre: Preprocess, labels, folder: Path, threads
) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    sess = session(model, threads)
    input_name = sess.get_inputs()[0].name
    outputs = [o.name for o in sess.get_outputs()]
    maps = inspect(model, "demo model").saliency
    results, timings = {}, []
    for photo, rgb in sorted(photos.items()):
        crop = rgb_crop(rgb, pre)  # the device's pixels (edgesal.runtimes.contract)
        feeds = {input_name: crop_tensor(crop, pre)}
        sess.run(None, feeds)  # warm-up, so the timing shows the steady state
        start = time.perf_counter()
        values = dict(zip(outputs, sess.run(None, feeds), strict=True))
        timings.append((time.perf_counter() - start) * 1e3)
        probs = softmax(values[outputs[0]][0])
        top5 = np.argsort(probs)[::-1][:5]
        label = f"{labels[top5[0]]} {probs[top5[0]]:.2f}"
        tiles = [_caption(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), label)]
        tiles += [_caption(overlay(crop, values[name][0]), m) for m, name in maps.items()]
        cv2.imwrite(str(folder / f"{photo}.png"), np.hstack(tiles))
        results[photo] = {
            "top5": [
                {"class": int(i), "label": labels[i], "prob": round(float(probs[i]), 4)}
                for i in top5
            ],
            "latency_ms_all_methods": round(timings[-1], 2),
            "panel": str(folder / f"{photo}.png"),
        }
    return {"photos": results, "median_latency_ms_all_methods": round(float(np.median(timings)), 2)}


def _caption(bgr: np.ndarray, text: str) -> np.ndarray:
    tile = bgr.copy()
    cv2.rectangle(tile, (0, 0), (tile.shape[1], 20), (0, 0, 0), -1)
    cv2.putText(tile, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return tile
