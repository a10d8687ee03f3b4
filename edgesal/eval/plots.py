"""The report's PNG figures: curves, histograms, sanity-check plots and grid, overlays.

Figures are drawn with matplotlib's object API on the Agg canvas (no display, no pyplot state),
overlays with OpenCV. Each function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgesal.errors import InputError
from edgesal.eval.similarity import unit_range
from edgesal.imaging import overlay

CONTROL_STYLE = {"random": ":", "sobel": "--"}


def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("the report's plots need matplotlib: pip install matplotlib") from None
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def curves(
    methods: dict,
    controls: dict,
    names: tuple[str, str],
    path: Path,
    title: str,
    unit: str = "pixels",
) -> Path:
    """Mean curves of ``names`` (two curve keys) per method (solid) and control (dotted); the x
    axis is the fraction of ``unit`` (pixels, tokens ...) removed or inserted."""
    fig, axes = _figure(10, 3.8, 1, 2)
    for ax, curve in zip(axes[0], names, strict=True):
        for name, entry in [*methods.items(), *controls.items()]:
            values = entry["mean_curves"].get(curve)
            if values is None:
                continue
            x = np.linspace(0, 1, len(values)) if "road" not in curve else None
            style = CONTROL_STYLE.get(name, "-") if name in controls else "-"
            label = f"{name} (control)" if name in controls else name
            ax.plot(x if x is not None else np.arange(len(values)), values, style, label=label)
        ax.set_title(curve.replace("_", " "))
        ax.set_ylabel("probability of the explained class")
        ax.set_xlabel(f"fraction of {unit}" if "road" not in curve else "removal step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def histograms(images: list[dict], metrics: list[str], path: Path) -> Path:
    """Per-image score histograms: one panel per metric, one series per method and control."""
    fig, axes = _figure(min(11, 3.6 * (len(metrics) + 1)), 3.4, 1, len(metrics) + 1)
    for ax, metric in zip(axes[0], metrics, strict=False):
        for group in ("methods", "controls"):
            names = sorted({n for image in images for n in image[group]})
            for name in names:
                values = [
                    i[group][name][metric] for i in images if metric in i[group].get(name, {})
                ]
                if values:
                    label = name if group == "methods" else f"{name} (control)"
                    ax.hist(values, bins=10, range=(0, 1), alpha=0.5, label=label)
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("score per image")
        ax.legend(fontsize=8)
    ax = axes[0][-1]
    ax.hist([i["prob"] for i in images], bins=10, range=(0, 1), color="grey")
    ax.set_title("top-1 probability")
    ax.set_xlabel("probability per image")
    return _save(fig, path)


def sanity_curves(section: dict, mode: str, threshold: float, path: Path) -> Path:
    """Mean Spearman (solid) and SSIM (dashed) of maps vs the original, per randomization step."""
    data = section[mode]
    labels, done = [], 0
    for step in data["steps"]:  # cascading: top k layers; independent: the ranks of one group
        first, done = done + 1, step["layers"] if mode == "cascading" else done + step["layers"]
        labels.append(str(done) if mode == "cascading" or first == done else f"{first}-{done}")
    fig, axes = _figure(9, 4, 1, 1)
    ax = axes[0][0]
    x = np.arange(len(labels))
    for method, entry in data["methods"].items():
        line = ax.plot(x, entry["mean_spearman"], "-o", label=f"{method} Spearman")[0]
        ax.plot(x, entry["mean_ssim"], "--", color=line.get_color(), label=f"{method} SSIM")
    ax.axhline(threshold, color="red", lw=1, label=f"threshold {threshold}")
    ax.set_xticks(x, labels)
    what = "top layers randomized" if mode == "cascading" else "layer group randomized (from top)"
    ax.set_xlabel(what)
    ax.set_ylabel("similarity to the original map")
    ax.set_ylim(-0.2, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    ax.set_title(f"sanity check: {mode} randomization")
    return _save(fig, path)


def sanity_grid(rows: dict[str, list[np.ndarray]], columns: list[str], path: Path) -> Path:
    """Thumbnails: one row per method, one column per step (the original first)."""
    names = list(rows)
    fig, axes = _figure(1.3 * len(columns) + 1, 1.4 * len(names) + 0.6, len(names), len(columns))
    for r, name in enumerate(names):
        for c, thumb in enumerate(rows[name]):
            ax = axes[r][c]
            ax.imshow(np.asarray(thumb, np.float32), cmap="jet", vmin=0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle("maps as layers are randomized (cascading, top down)")
    return _save(fig, path)


def compare_histograms(images: list[dict], path: Path) -> Path:
    """Fidelity histograms: Spearman, SSIM and top-k IoU per method."""
    metrics = ("spearman", "ssim", "top_k_iou")
    fig, axes = _figure(12, 3.4, 1, 3)
    methods = sorted({m for image in images for m in image["methods"]})
    for ax, metric in zip(axes[0], metrics, strict=True):
        for method in methods:
            values = [i["methods"][method][metric] for i in images if method in i["methods"]]
            ax.hist(
                values,
                bins=10,
                range=(-0.1 if metric == "spearman" else 0, 1),
                alpha=0.5,
                label=method,
            )
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("per image")
        ax.legend(fontsize=8)
    return _save(fig, path)


def overlay_strip(crop: np.ndarray, maps: dict[str, np.ndarray], path: Path) -> Path:
    """The crop, then the crop blended with each map, labelled, side by side (small crops are
    enlarged to 160 pixels high, nearest neighbour, so the labels fit)."""
    if crop.shape[0] < 160:
        scale = -(-160 // crop.shape[0])
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        size = (crop.shape[1], crop.shape[0])
        maps = {
            k: cv2.resize(np.asarray(v, np.float32), size, interpolation=cv2.INTER_NEAREST)
            for k, v in maps.items()
        }
    tiles = [cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)]
    labels = ["image"]
    for name, saliency in maps.items():
        tiles.append(overlay(crop, unit_range(saliency).astype(np.float32)))
        labels.append(name)
    for tile, label in zip(tiles, labels, strict=True):
        cv2.rectangle(tile, (0, 0), (tile.shape[1], 18), (0, 0, 0), -1)
        cv2.putText(tile, label[:28], (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.hconcat(tiles)):
        raise InputError(f"cannot write {path}")
    return path


def series_band(
    x: np.ndarray,
    maps: dict[str, np.ndarray],
    axes: tuple[str, ...],
    map_axes: tuple[str, ...],
    path: Path,
    title: str,
) -> Path:
    """One panel per method: the sample along its time (``T``) or feature (``F``) axis - lines
    for up to 8 channels, an image for more - with the map, its largest value over the other
    axes, as a colour band underneath (and shading the panel)."""
    along = "T" if "T" in axes else axes[0]
    values = np.moveaxis(x, axes.index(along), 0).reshape(x.shape[axes.index(along)], -1)
    fig, panels = _figure(10, 2.6 * len(maps), len(maps), 1)
    for ax, (name, saliency) in zip(panels[:, 0], maps.items(), strict=True):
        band = np.moveaxis(saliency, map_axes.index(along), 0) if along in map_axes else saliency
        band = unit_range(band.reshape(band.shape[0], -1).max(axis=1))
        length = values.shape[0]
        low, high = float(values.min()), float(values.max())
        high = high if high > low else low + 1.0
        if values.shape[1] <= 8:
            ax.plot(np.arange(length), values, linewidth=1, zorder=3)
        else:
            ax.imshow(values.T, aspect="auto", origin="lower", cmap="gray",
                      extent=(-0.5, length - 0.5, low, high))  # fmt: skip
        ax.imshow(band[None], aspect="auto", cmap="YlOrRd", alpha=0.5,
                  extent=(-0.5, length - 0.5, low, high))  # fmt: skip
        strip = low - 0.12 * (high - low)
        ax.imshow(band[None], aspect="auto", cmap="inferno",
                  extent=(-0.5, length - 0.5, strip, low - 0.02 * (high - low)))  # fmt: skip
        ax.set_ylim(strip, high)
        ax.set_title(f"{name}: map as a band (bright = salient)")
        ax.set_xlabel({"T": "time step", "F": "feature"}.get(along, along))
    fig.suptitle(title)
    return _save(fig, path)
