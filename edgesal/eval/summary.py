"""Per-image numbers -> the report's summary: means, spreads, pointing accuracy, verdicts."""

from __future__ import annotations

import math

import numpy as np

from edgesal.eval.sanity import verdict

CURVE_METRICS = ("deletion_auc", "insertion_auc", "road_morf_mean", "road_lerf_mean")


def stats(values: list[float]) -> dict:
    """mean, std, median, min, max and n of the finite values (None when there are none)."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if not finite.size:
        return {"n": 0, "mean": None, "std": None, "median": None, "min": None, "max": None}
    return {
        "n": int(finite.size),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "median": float(np.median(finite)),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }


def summarize_maps(images: list[dict], group: str) -> dict:
    """``{name: {metric: stats, "pointing": {...}, "mean_curves": {...}}}`` over the images, for
    each map in ``group`` ("methods" or "controls")."""
    names = sorted({name for image in images for name in image[group]})
    summary = {}
    for name in names:
        rows = [image[group][name] for image in images if name in image[group]]
        entry: dict = {}
        for metric in (*CURVE_METRICS, "max_sensitivity"):
            if any(metric in row for row in rows):
                entry[metric] = stats([row.get(metric) for row in rows])
        hits = [row["pointing"] for row in rows if row.get("pointing") is not None]
        if any("pointing" in row for row in rows):
            entry["pointing"] = {
                "hits": int(sum(hits)),
                "scored": len(hits),
                "unscored": sum(1 for row in rows if "pointing" in row) - len(hits),
                "accuracy": float(np.mean(hits)) if hits else None,
            }
        entry["mean_curves"] = {
            curve: np.mean([row[curve] for row in rows], axis=0).tolist()
            for curve in ("deletion", "insertion", "road_morf", "road_lerf")
            if all(curve in row for row in rows)
        }
        summary[name] = entry
    return summary


def summarize_sanity(original: dict, steps: dict[str, list[dict]], threshold: float) -> dict:
    """The sanity section: per mode and method the similarity per step, and the verdicts."""
    report: dict = {
        key: original[key]
        for key in ("images", "targets", "layers", "counts", "export", "pipeline_spearman")
    }
    report["threshold"] = threshold
    for mode, results in steps.items():
        ordered = sorted(results, key=lambda r: r["step"])
        methods = sorted({m for r in ordered for m in r["similarity"]})
        report[mode] = {
            "steps": [{"layers": r["layers"], "deepest": r["deepest"]} for r in ordered],
            "methods": {m: _per_step(ordered, m) for m in methods},
        }
    report["verdicts"] = _verdicts(report, threshold)
    if "random_logit" in original:
        report["random_logit"] = _random_logit(original["random_logit"], threshold)
    return report


def _per_step(results: list[dict], method: str) -> dict:
    spearman = [r["similarity"][method]["spearman"] for r in results]
    ssim = [r["similarity"][method]["ssim"] for r in results]
    return {
        "spearman": spearman,
        "ssim": ssim,
        "mean_spearman": [float(np.mean(v)) for v in spearman],
        "mean_ssim": [float(np.mean(v)) for v in ssim],
    }


def _verdicts(report: dict, threshold: float) -> dict:
    """From the cascading mode: pass when the mean Spearman after the full cascade is below
    ``threshold``; ``first_below`` is the number of top layers randomized when it first was."""
    if "cascading" not in report:
        return {}
    cascade = report["cascading"]
    verdicts = {}
    for method, entry in cascade["methods"].items():
        means = entry["mean_spearman"]
        below = [i for i, v in enumerate(means) if v < threshold]
        verdicts[method] = {
            **verdict(means[-1], threshold, method == "sobel", "parameters"),
            "control": method == "sobel",
            "final_spearman": means[-1],
            "final_ssim": entry["mean_ssim"][-1],
            "first_below": cascade["steps"][below[0]]["layers"] if below else None,
        }
    return verdicts


def _random_logit(found: dict, threshold: float) -> dict:
    """Random-logit check: pass when the mean SSIM between the maps of the explained class and
    of a random other class is below ``threshold``."""
    methods = {}
    for method, sims in found["similarity"].items():
        mean_ssim = float(np.mean(sims["ssim"]))
        methods[method] = {
            **sims,
            "mean_ssim": mean_ssim,
            "mean_spearman": float(np.mean(sims["spearman"])),
            **verdict(mean_ssim, threshold, method == "sobel", "class"),
        }
    return {"classes": found["classes"], "methods": methods}


def summarize_compare(images: list[dict]) -> dict:
    """Fidelity summary: per method stats of Spearman, SSIM and top-k IoU; top-1 agreement."""
    methods = sorted({m for image in images for m in image["methods"]})
    summary = {
        m: {
            metric: stats([i["methods"][m][metric] for i in images if m in i["methods"]])
            for metric in ("spearman", "ssim", "top_k_iou")
        }
        for m in methods
    }
    agree = [bool(i["top1_agree"]) for i in images]
    return {"methods": summary, "top1_agreement": float(np.mean(agree)) if agree else None}
