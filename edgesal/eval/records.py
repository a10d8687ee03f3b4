"""``edgesal eval MODEL --records FILE``: audit the maps a device recorded (``.salrec``).

The records are read with the device runtime's own reader
(:class:`edgesal.runtimes.records.RecordReader`).
The audit first checks that the file was recorded with MODEL (the sha256 of the model file the
device ran, stored in the stream header), then summarizes what the device saw and decided
(predictions, methods, its own counterfactual self-check). Given the frames the device ran on
(``--images``, a folder in name order, as the device's folder source reads it), every recorded map
is compared with the map this machine computes for the same crop and class (Spearman, SSIM, top-k
IoU, top-1 agreement) and both maps are scored by deletion and insertion on the model.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx

from edgesal import __version__
from edgesal.errors import InputError
from edgesal.eval.audit import WORK, Loaded, _digest
from edgesal.eval.engines import SerialEngine, run_tasks
from edgesal.eval.model import Runner
from edgesal.eval.options import EvalOptions
from edgesal.eval.similarity import spearman, ssim, top_k_iou
from edgesal.eval.store import ResultStore, fingerprint
from edgesal.eval.summary import stats, summarize_maps
from edgesal.eval.tasks import Job, Result, map_scores, pixels_of
from edgesal.imaging import read_folder
from edgesal.runtimes.contract import Region, resize_region
from edgesal.runtimes.errors import DeviceError
from edgesal.runtimes.records import RecordReader

TOP_K = 0.1


@dataclass(frozen=True)
class RecordTask:
    """One recorded map: the frame's crop as the device made it, the map, what it explained."""

    key: str
    name: str
    frame: int
    crop: np.ndarray
    device_map: np.ndarray
    method: str
    target: int
    device_class: int

    def run(self, worker) -> Result:
        return audit_frame(worker.runner, self, worker.opts)


def _reader(path: str | Path):
    try:
        reader = RecordReader(path)
        headers = reader.headers()
        frames = list(reader.frames())
        events = reader.events()
        truncated = reader.truncated_bytes
    except DeviceError as exc:
        raise InputError(f"--records {path}: {exc}") from exc
    if not headers:
        raise InputError(f"--records {path}: no stream header; not written by an edgesal runtime")
    return headers, frames, events, truncated


def model_sha256(model: onnx.ModelProto | str | Path) -> str:
    """sha256 of the model file (what the device stores), or of the serialized proto."""
    if isinstance(model, str | Path):
        return hashlib.sha256(Path(model).read_bytes()).hexdigest()
    return hashlib.sha256(model.SerializeToString()).hexdigest()


def check_identity(headers: list[dict], sha: str, loaded: Loaded, path: str) -> list[str]:
    """The recorded model paths whose sha256 is this model's; none is an error naming both."""
    recorded = [m for h in headers for m in h.get("models", [])]
    mine = [str(m.get("model")) for m in recorded if m.get("sha256") == sha]
    if not mine:
        listed = ", ".join(
            dict.fromkeys(
                f"{m.get('model')} (sha256 {str(m.get('sha256'))[:12]}…)" for m in recorded
            )
        )
        raise InputError(
            f"--records {path} was recorded with {listed or 'an unnamed model'}, not with "
            f"{loaded.where} (sha256 {sha[:12]}…): audit it with the model the device ran"
        )
    labels = next((h["labels"] for h in headers if h.get("labels")), None)
    if labels and loaded.spec.labels and len(labels) != len(loaded.spec.labels):
        raise InputError(
            f"--records {path}: {len(labels)} labels, the model has {len(loaded.spec.labels)}"
        )
    return mine


def frame_images(folder: str | Path) -> list[tuple[str, np.ndarray]]:
    """Readable images of ``folder`` in name order, unreadable ones skipped: the frame indices
    the device's folder source gave them."""
    return list(read_folder(folder, "--images", unreadable=[]).items())


def device_crop(rgb: np.ndarray, region: list[int], size: tuple[int, int]) -> np.ndarray:
    """The crop the device fed the model: the recorded ``region`` [x, y, w, h] of the frame
    resized to the input grid by the device's own :func:`~edgesal.runtimes.contract.resize_region`
    (RGB in, RGB out)."""
    return np.ascontiguousarray(resize_region(rgb, Region(*map(int, region)), tuple(size)))


def recorded_method(name: str, methods: dict[str, str]) -> str | None:
    """This model's method for a recorded method name. The runtime labels the main ``saliency``
    output of a multi-method model with the joined names ("vanilla,integrated"); that output is
    the first method's map."""
    if name in methods:
        return name
    if name == ",".join(methods):
        return next(iter(methods))
    return None


def record_tasks(frames: list, images: list[tuple[str, np.ndarray]], loaded: Loaded, path: str):
    """One task per recorded map of this model's methods; frames are matched to images by index."""
    tasks, skipped = [], Counter()
    for frame in frames:
        meta = frame.meta
        if frame.saliency is None:
            continue
        method = recorded_method(str(meta.get("method")), loaded.spec.saliency)
        if method is None:
            skipped[str(meta.get("method"))] += 1
            continue
        index = int(meta["frame"])
        if index >= len(images):
            raise InputError(
                f"--records {path}: frame {index} has a map but --images holds only "
                f"{len(images)} readable images"
            )
        name, rgb = images[index]
        width, height = meta["map"]["frame_size"]
        if rgb.shape[:2] != (height, width):
            raise InputError(
                f"--records {path}: frame {index} was {width}x{height} but {name} is "
                f"{rgb.shape[1]}x{rgb.shape[0]}: not the frames the device ran on"
            )
        crop = device_crop(rgb, meta["map"]["region"], loaded.spec.size)
        key = f"record:{index}:{method}:{_digest(crop)}:{_digest(frame.saliency)}"
        target = meta.get("target")
        target = int(meta["class"]) if target is None else int(target)
        tasks.append(
            RecordTask(key, name, index, crop, frame.saliency, method, target, int(meta["class"]))
        )
    return tasks, dict(skipped)


def audit_frame(runner: Runner, task: RecordTask, opts: EvalOptions) -> Result:
    """Device map vs this machine's map for the same crop and class; both scored."""
    pixels = pixels_of(task.crop, runner.spec.preprocess)
    fixed = task.target if runner.spec.target_input else None
    ex = runner.explain(pixels, fixed)
    mine, device = ex.maps[task.method], task.device_map.astype(np.float32)
    if device.shape != mine.shape:
        device = cv2.resize(device, (mine.shape[1], mine.shape[0]), interpolation=cv2.INTER_LINEAR)
    maps = {"device": device, "workstation": mine}
    scores = {
        kind: map_scores(runner, pixels, m, task.target, opts, task.name, kind)
        for kind, m in maps.items()
    }
    top = int(np.argmax(ex.probs))
    numbers = {
        "name": task.name,
        "frame": task.frame,
        "method": task.method,
        "target": task.target,
        "device_class": task.device_class,
        "class": top,
        "label": runner.spec.label(top),
        "prob": float(ex.probs[top]),
        "top1_agree": top == task.device_class,
        "same_target": ex.target == task.target,
        "fidelity": {
            "spearman": spearman(mine, device),
            "ssim": ssim(mine, device),
            "top_k_iou": top_k_iou(mine, device, TOP_K),
        },
        "methods": scores,
        "controls": {},
    }
    return numbers, {"map/device": device, "map/workstation": mine}


def device_summary(frames: list, events: list[dict]) -> dict:
    """What the device decided: predictions, methods, self-check outcomes, governor events."""
    metas = [f.meta for f in frames]
    checked = [m["faithful"] for m in metas if m.get("faithful") is not None]
    return {
        "frames": len(metas),
        "maps": sum(1 for f in frames if f.saliency is not None),
        "methods": dict(Counter(str(m.get("method")) for m in metas if m.get("method"))),
        "labels": dict(Counter(str(m.get("label")) for m in metas).most_common(20)),
        "score": stats([m.get("score") for m in metas]),
        "selfchecks": len(checked),
        "faithful_rate": float(np.mean(checked)) if checked else None,
        "events": len(events),
    }


def audit_records(
    model: onnx.ModelProto | str | Path,
    records: str | Path,
    out: str | Path,
    images: str | Path | None = None,
    options: EvalOptions | None = None,
    engine=None,
    progress: bool = False,
    resume: bool = True,
) -> dict:
    """Check, summarize and (with the frames in ``images``) score a device's records."""
    from edgesal.eval import report

    opts = options or EvalOptions()
    opts.validate()
    loaded = Loaded.of(model)
    headers, frames, events, truncated = _reader(records)
    sha = model_sha256(model)
    paths = check_identity(headers, sha, loaded, str(records))
    result: dict = {
        "kind": "records",
        "edgesal_version": __version__,
        "model": loaded.describe(),
        "records": {
            "path": str(records),
            "recorded_as": paths,
            "headers": headers,
            "truncated_bytes": truncated,
        },
        "device": device_summary(frames, events),
        "frames": len(frames),
        "images": [],
    }
    crops, maps = {}, {}
    if images is not None:
        tasks, skipped = record_tasks(frames, frame_images(images), loaded, str(records))
        if not tasks:
            raise InputError(f"--records {records}: no recorded maps of this model's methods")
        engine = engine or SerialEngine()
        work = Path(out) / WORK / fingerprint(loaded.data, opts.to_json(), "records")
        store = ResultStore(work) if resume else None
        job = Job(loaded.data, loaded.where, opts)
        done, run = run_tasks(engine, job, tasks, store, progress, "records")
        numbers = [done[t.key][0] for t in tasks]
        result["images"] = numbers
        result["skipped_methods"] = skipped
        result["run"] = {**run, "engine": engine.name}
        result["summary"] = {
            "fidelity": {
                metric: stats([n["fidelity"][metric] for n in numbers])
                for metric in ("spearman", "ssim", "top_k_iou")
            },
            "top1_agreement": float(np.mean([n["top1_agree"] for n in numbers])),
            "methods": summarize_maps(numbers, "methods"),
        }
        for task in tasks:
            label = f"frame {task.frame:05d} {task.method}"
            crops[label] = task.crop
            maps[label] = {k[4:]: v for k, v in done[task.key][1].items()}
    report.write_records(Path(out), result, crops, maps, opts.overlays)
    return result
