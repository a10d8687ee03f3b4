"""Faithfulness of maps over series, tabular and audio inputs: deletion and insertion curves
over time steps, features or time-frequency cells (``edgesal eval MODEL --samples FILE``).

The unit that is deleted or inserted is one element of the map (``edgesal.map_axes``): a time
step of a series whose channel axis the export reduced (all its channels together), one feature
of a tabular row, one cell of a time x frequency map. Deletion replaces units by the baseline in
order of decreasing saliency, ``steps`` equal steps, and the explained class's probability should
fall fast (low AUC is good); insertion puts the sample's units back into the baseline in the same
order (high AUC is good) - Petsiuk et al. 2018's curves, with the baseline of the input kind
(``--deletion-baseline`` / ``--insertion-canvas``):

- ``zeros``: every element 0;
- ``mean``: a series' own mean per channel over time; a tabular feature's mean over the given
  samples (a row's mean across features mixes units);
- ``blur``: a series smoothed along time by a Gaussian of sigma 5 steps (RISE's blurred canvas,
  in one dimension); for tabular rows the ``mean`` baseline.

A random ranking is scored beside every method as the control. The report folder gets
``report.json``, ``report.html`` (self-contained), ``curves.png`` and ``sample_K.png``.
Samples come from ``.npy`` (``allow_pickle`` off) or ``.csv`` (one row per sample; series of one
channel or tabular rows): [N, *input shape without the batch axis].
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgesal.errors import InputError, ModelLoadError
from edgesal.eval import html
from edgesal.eval.graphs import prune, with_free_batch
from edgesal.eval.model import session
from edgesal.eval.perturb import auc, counts, order
from edgesal.eval.plots import curves, series_band
from edgesal.onnx_io import load_model
from edgesal.runtimes.contract import build_contract
from edgesal.runtimes.errors import ModelError, SourceError
from edgesal.runtimes.model import probabilities
from edgesal.runtimes.table_sources import read_numbers

MAX_SAMPLES_BYTES = 1 << 30
BLUR_SIGMA = 5.0
KINDS = ("series", "tabular", "audio")
PLOTS = 4  # samples drawn with their map as a band
ONNX_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
              "tensor(bool)": np.bool_, "tensor(float16)": np.float16}  # fmt: skip


@dataclass(frozen=True)
class Spec:
    """What the metadata says about a non-image saliency model."""

    input: str
    shape: tuple[int, ...]  # without the batch axis
    axes: tuple[str, ...]  # without N
    map_axes: tuple[str, ...]  # without N
    modality: str
    scores: str
    saliency: dict[str, str]
    target: str
    labels: tuple[str, ...]


def inspect(model: onnx.ModelProto, where: str) -> Spec:
    """The spec of an exported series/tabular/audio model; other models are refused by name."""
    props = {p.key: p.value for p in model.metadata_props}
    dims = {
        i.name: ([d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim], "float32")
        for i in model.graph.input
    }
    try:
        contract = build_contract(where, props, dims, [o.name for o in model.graph.output])
    except ModelError as exc:
        raise ModelLoadError(str(exc)) from None
    meta = contract.extra
    modality = str(meta.get("modality", "image"))
    if modality not in KINDS:
        raise InputError(
            f"--samples: {where} explains an {modality} input; evaluate images with --images "
            f"(--samples is for {', '.join(KINDS)} models, exported with --modality)"
        )
    shape = dims[contract.input][0]
    if not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise InputError(f"{where}: input '{contract.input}' has no static shape ({shape})")
    axes = str(meta.get("axes", "")).split(",")
    map_axes = str(meta.get("map_axes", meta.get("axes", ""))).split(",")
    if contract.target_input or contract.target.startswith("output:"):
        raise InputError(
            f"{where}: target '{contract.target}'; deletion and insertion need a class "
            "probability (export with --target argmax or class:K)"
        )
    return Spec(
        contract.input,
        tuple(int(d) for d in shape[1:]),
        tuple(axes[1:]),
        tuple(map_axes[1:]),
        modality,
        contract.scores,
        dict(contract.saliency),
        contract.target,
        contract.labels,
    )


def read_samples(path: str, shape: tuple[int, ...]) -> np.ndarray:
    """[N, *shape] float32 from ``.npy`` or ``.csv``; a single sample of ``shape`` gets N = 1."""
    try:
        data = read_numbers(Path(path), "--samples", "numeric samples", MAX_SAMPLES_BYTES)
    except SourceError as exc:
        raise InputError(str(exc)) from None
    if data.shape == shape:
        data = data[None]
    if data.shape[1:] != shape or data.shape[0] < 1:
        raise InputError(
            f"--samples {path}: shape {list(data.shape)}, the model takes samples of "
            f"{list(shape)} (give [N, {', '.join(map(str, shape))}])"
        )
    return data


def baseline(samples: np.ndarray, index: int, spec: Spec, kind: str) -> np.ndarray:
    """The baseline of sample ``index`` (see the module docstring)."""
    x = samples[index]
    if kind == "zeros":
        return np.zeros_like(x)
    if "T" not in spec.axes:  # tabular (or a model without a time axis)
        return samples.mean(axis=0)
    time = spec.axes.index("T")
    if kind == "mean":
        return np.broadcast_to(x.mean(axis=time, keepdims=True), x.shape).copy()
    if kind == "blur":
        return _smooth(x, time, BLUR_SIGMA)
    raise InputError(f"baseline '{kind}': choose zeros, blur or mean")


def _smooth(x: np.ndarray, axis: int, sigma: float) -> np.ndarray:
    """Gaussian smoothing along ``axis`` (reflected edges), float32."""
    radius = max(1, math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    moved = np.moveaxis(x.astype(np.float64), axis, -1)
    padded = np.pad(moved, [(0, 0)] * (moved.ndim - 1) + [(radius, radius)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps.size, axis=-1)
    return np.moveaxis(windows @ taps, -1, axis).astype(np.float32)


def unit_mask(moved: np.ndarray, spec: Spec) -> np.ndarray:
    """Map-shaped booleans -> input-shaped ones: a reduced axis (the channel) is broadcast."""
    shape = [spec.shape[spec.axes.index(a)] if a in spec.map_axes else 1 for a in spec.axes]
    order_axes = [spec.map_axes.index(a) for a in spec.axes if a in spec.map_axes]
    mask = np.transpose(moved, order_axes).reshape(shape)
    return np.broadcast_to(mask, spec.shape)


def blends(start, end, ranking: np.ndarray, steps: int, spec: Spec, map_shape) -> np.ndarray:
    """[steps + 1, *input]: blend k takes its first ``counts[k]`` ranked units from ``end``."""
    units = ranking.size
    position = np.empty(units, np.int64)
    position[ranking] = np.arange(units)
    out = []
    for moved_count in counts(units, steps):
        moved = (position < moved_count).reshape(map_shape)
        out.append(np.where(unit_mask(moved, spec), end, start))
    return np.stack(out).astype(np.float32)


class SeriesRunner:
    """The saliency model (one sample at a time) and a forward copy for batches of blends.
    Inputs other than the explained one (a streaming cache, a mask) get zeros, as on the
    device."""

    def __init__(self, model: onnx.ModelProto, spec: Spec, threads: int = 1):
        self.spec = spec
        self.saliency = session(model, threads)
        forward = with_free_batch(prune(model, [spec.scores]), spec.input)
        try:
            self.forward = session(forward, threads)
            self.forward.run([spec.scores], self._feeds(self.forward, np.zeros((2, *spec.shape))))
            self.batched = True
        except Exception:  # a graph that fixes batch 1: score blends one at a time
            self.forward, self.batched = session(prune(model, [spec.scores]), threads), False

    def _feeds(self, run_on, batch: np.ndarray) -> dict[str, np.ndarray]:
        """``batch`` for the explained input, zeros of the same batch for the others."""
        feeds = {self.spec.input: batch.astype(np.float32)}
        for arg in run_on.get_inputs():
            if arg.name != self.spec.input:
                dims = [d if isinstance(d, int) and d > 0 else 1 for d in arg.shape[1:]]
                dtype = ONNX_TYPES.get(arg.type, np.float32)
                feeds[arg.name] = np.zeros((len(batch), *dims), dtype)
        return feeds

    def explain(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        names = [self.spec.scores, *self.spec.saliency.values()]
        values = self.saliency.run(names, self._feeds(self.saliency, x[None]))
        maps = {m: v[0] for m, v in zip(self.spec.saliency, values[1:], strict=True)}
        return probabilities(values[0][0]), maps

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of each sample of ``batch``."""
        run = self.forward.run
        if self.batched:
            scores = run([self.spec.scores], self._feeds(self.forward, batch))[0]
        else:
            scores = np.concatenate(
                [run([self.spec.scores], self._feeds(self.forward, b[None]))[0] for b in batch]
            )
        return np.stack([probabilities(row) for row in scores.reshape(len(batch), -1)])


def evaluate_samples(
    model_path: str,
    samples_path: str,
    output: str,
    steps: int = 32,
    deletion_baseline: str = "zeros",
    insertion_canvas: str = "mean",
    seed: int = 0,
    threads: int = 1,
    max_samples: int | None = None,
    plots: int = PLOTS,
) -> dict:
    """Deletion/insertion AUCs per method and for a random ranking; writes report.json,
    curves.png and the first ``plots`` samples drawn with their maps (``sample_K.png``)."""
    model = load_model(model_path)
    spec = inspect(model, model_path)
    samples = read_samples(samples_path, spec.shape)[:max_samples]
    runner = SeriesRunner(model, spec, threads)
    rng = np.random.default_rng(seed)
    names = [*spec.saliency, "random"]
    rows: list[dict] = []
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    for index in range(len(samples)):
        x = samples[index]
        probs, maps = runner.explain(x)
        target = int(spec.target[6:]) if spec.target.startswith("class:") else int(probs.argmax())
        maps["random"] = rng.random(next(iter(maps.values())).shape).astype(np.float32)
        row = {"index": index, "target": target, "probability": float(probs[target]), "curves": {}}
        for name in names:
            ranking = order(maps[name])
            shape = maps[name].shape
            start = baseline(samples, index, spec, deletion_baseline)
            canvas = baseline(samples, index, spec, insertion_canvas)
            deletion = runner.predict(blends(x, start, ranking, steps, spec, shape))[:, target]
            insertion = runner.predict(blends(canvas, x, ranking, steps, spec, shape))[:, target]
            row["curves"][name] = {"deletion": deletion.tolist(), "insertion": insertion.tolist()}
        rows.append(row)
        if index < plots:
            series_band(x, {m: maps[m] for m in spec.saliency}, spec.axes, spec.map_axes,
                        out / f"sample_{index}.png", f"sample {index}: class {target}")  # fmt: skip
    report = _report(model_path, samples_path, spec, rows, names, steps, deletion_baseline,
                     insertion_canvas)  # fmt: skip
    methods = {m: report["methods"][m] for m in spec.saliency}
    curves(methods, {"random": report["controls"]["random"]}, ("deletion", "insertion"),
           out / "curves.png", f"{Path(model_path).name}: {spec.modality}")  # fmt: skip
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _write_html(out, report, min(plots, len(samples)))
    return report


def _write_html(out: Path, report: dict, plotted: int) -> Path:
    """``report.html``: the AUC table, the mean curves and the plotted samples."""
    rows = [
        [html.esc(name + (" (control)" if group == "controls" else "")),
         html.mean_std(entry["deletion_auc"]), html.mean_std(entry["insertion_auc"])]
        for group in ("methods", "controls")
        for name, entry in report[group].items()
    ]  # fmt: skip
    what = (
        f"{len(report['samples'])} samples, {report['modality']} input {report['axes']}, "
        f"{report['units']} units on the map's axes {report['map_axes']}, {report['steps']} "
        f"steps; deleted units become '{report['deletion_baseline']}', insertion starts from "
        f"'{report['insertion_canvas']}'. Deletion AUC: lower is better; insertion: higher."
    )
    auc_table = html.table(["map", "deletion AUC", "insertion AUC"], rows)
    sections = [("Deletion and insertion", f"<p class=note>{html.esc(what)}</p>{auc_table}")]
    sections.append(("Mean curves", html.figure(out / "curves.png", "mean over the samples")))
    figures = "".join(
        html.figure(out / f"sample_{i}.png", f"sample {i} with its map as a band")
        for i in range(plotted)
    )
    if figures:
        sections.append(("Samples", figures))
    return html.write(out / "report.html", f"Saliency faithfulness: {report['model']}", sections)


def _stats(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_sample": values}


def _report(model_path, samples_path, spec: Spec, rows, names, steps, deletion, insertion) -> dict:
    entries = {}
    for name in names:
        dels = np.array([r["curves"][name]["deletion"] for r in rows])
        ins = np.array([r["curves"][name]["insertion"] for r in rows])
        del_auc = [auc(c) for c in dels]
        ins_auc = [auc(c) for c in ins]
        entries[name] = {
            "deletion_auc": _stats(del_auc),
            "insertion_auc": _stats(ins_auc),
            "mean_curves": {"deletion": dels.mean(0).tolist(), "insertion": ins.mean(0).tolist()},
        }
    return {
        "model": model_path,
        "samples_file": samples_path,
        "modality": spec.modality,
        "axes": list(spec.axes),
        "map_axes": list(spec.map_axes),
        "units": int(np.prod([spec.shape[spec.axes.index(a)] for a in spec.map_axes])),
        "steps": steps,
        "deletion_baseline": deletion,
        "insertion_canvas": insertion,
        "samples": rows,
        "methods": {m: entries[m] for m in spec.saliency},
        "controls": {"random": entries["random"]},
    }
