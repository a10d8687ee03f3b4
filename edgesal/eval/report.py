"""Writing a report folder: ``report.json`` (every number), PNG plots, ``report.html``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgesal.errors import InputError
from edgesal.eval import html, plots
from edgesal.eval.html import esc, mean_std, number, table

METRICS = [  # key, column title (arrow: which direction is better)
    ("deletion_auc", "deletion AUC ↓"),
    ("insertion_auc", "insertion AUC ↑"),
    ("road_morf_mean", "ROAD MoRF ↓"),
    ("road_lerf_mean", "ROAD LeRF ↑"),
    ("max_sensitivity", "max-sensitivity ↓"),
]


def _prepare(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"-o {out}: cannot create the report folder: {exc}") from exc


def _json(out: Path, result: dict) -> None:
    text = json.dumps(result, indent=1, allow_nan=True)
    (out / "report.json").write_text(text + "\n", encoding="utf-8")


def write_eval(
    out: Path,
    result: dict,
    crops: dict[str, np.ndarray],
    maps: dict[str, dict[str, np.ndarray]],
    thumbs: dict[str, list[dict[str, np.ndarray]]],
) -> None:
    """The eval report folder; ``maps`` are each image's maps, ``thumbs`` the sanity grid's."""
    _prepare(out)
    _json(out, result)
    summary, opts, images = result["summary"], result["options"], result["images"]
    sections = [("Model and run", _model_table(result))]
    sections.append(("Summary", _summary_table(summary) + _pointing_note(summary, opts)))
    figures = [
        html.figure(
            plots.curves(
                summary["methods"],
                summary["controls"],
                ("deletion", "insertion"),
                out / "curves_deletion_insertion.png",
                f"deletion ({opts['deletion_baseline']}) and insertion "
                f"({opts['insertion_canvas']} canvas), {opts['steps']} steps",
            ),
            "mean curves over the images",
        )
    ]
    if opts["road_fractions"]:
        path = plots.curves(
            summary["methods"],
            summary["controls"],
            ("road_morf", "road_lerf"),
            out / "curves_road.png",
            f"ROAD, removal fractions {opts['road_fractions']}",
        )
        figures.append(html.figure(path, "ROAD with noisy linear imputation"))
    metrics = ["deletion_auc", "insertion_auc"]
    figures.append(
        html.figure(
            plots.histograms(images, metrics, out / "score_histograms.png"),
            "per-image scores; methods and controls",
        )
    )
    sections.append(("Curves and score histograms", "".join(figures)))
    if result.get("sanity"):
        sections.append(("Sanity checks", _sanity(out, result["sanity"], thumbs)))
    sections.append(("Images", _image_table(images) + _overlays(out, crops, maps, opts)))
    html.write(out / "report.html", f"edgesal eval: {result['model']['where']}", sections)


def _model_table(result: dict) -> str:
    model, run = result["model"], result["run"]
    rows = [
        ["model", esc(model["where"])],
        ["sha256", esc(model["sha256"][:16] + "…")],
        ["methods", esc(", ".join(model["methods"]))],
        ["target", esc(model["target"])],
        ["input", esc(f"{model['input']['name']} {model['input']['shape']} {model['layout']}")],
        ["images", str(len(result["images"]))],
        ["engine", esc(run["engine"])],
        ["tasks", f"{run['tasks']} ({run['computed']} computed, {run['resumed']} resumed)"],
        ["seconds", f"{run['seconds']:.1f}"],
    ]
    return table(["", ""], rows)


def _summary_table(summary: dict) -> str:
    header = ["map", *[title for _, title in METRICS], "pointing game"]
    rows = []
    for group in ("methods", "controls"):
        for name, entry in summary[group].items():
            label = esc(name) if group == "methods" else f"{esc(name)} (control)"
            pointing = entry.get("pointing")
            hit = (
                f"{number(pointing['accuracy'])} ({pointing['hits']}/{pointing['scored']})"
                if pointing
                else "–"
            )
            rows.append([label, *[mean_std(entry.get(key)) for key, _ in METRICS], hit])
    return table(header, rows)


def _pointing_note(summary: dict, opts: dict) -> str:
    if not any("pointing" in e for e in summary["methods"].values()):
        return '<p class="note">No boxes given: no pointing game.</p>'
    return (
        f'<p class="note">Pointing game: a hit when a maximal pixel is within '
        f"{opts['tolerance']} px of a box. Values are mean ± std over images.</p>"
    )


def _sanity(out: Path, section: dict, thumbs: dict) -> str:
    threshold = section["threshold"]
    parts = [
        f'<p class="note">Weights re-initialized from the top layer down on the ONNX graph '
        f"({len(section['layers'])} parametric layers), model exported again "
        f"({esc(', '.join(section['export']['methods']))}), maps compared with the original on "
        f"{len(section['images'])} image(s). Pass: mean Spearman after the full cascade &lt; "
        f"{threshold}. The Sobel edge detector is a built-in control that must be flagged.</p>"
    ]
    if section["verdicts"]:
        rows = [
            [
                esc(m) + (" (control)" if v["control"] else ""),
                number(v["final_spearman"]),
                number(v["final_ssim"]),
                number(v["first_below"]),
                html.verdict_cell(v),
                esc(v["note"]),
            ]
            for m, v in section["verdicts"].items()
        ]
        header = ["map", "Spearman (all)", "SSIM (all)", "below after", "verdict", "note"]
        parts.append(table(header, rows))
    if "random_logit" in section:
        rows = [
            [
                esc(m),
                number(v["mean_spearman"]),
                number(v["mean_ssim"]),
                html.verdict_cell(v),
                esc(v["note"]),
            ]
            for m, v in section["random_logit"]["methods"].items()
        ]
        parts.append(
            "<p class=note>Random-logit check: map of the explained class vs a random "
            "other class (pass: mean SSIM below the threshold).</p>"
        )
        parts.append(table(["map", "Spearman", "SSIM", "verdict", "note"], rows))
    for mode in ("cascading", "independent"):
        if mode in section:
            path = plots.sanity_curves(section, mode, threshold, out / f"sanity_{mode}.png")
            parts.append(html.figure(path, f"{mode} randomization"))
    if "cascading" in thumbs and "original" in thumbs:
        path = _grid(out, section, thumbs)
        parts.append(html.figure(path, f"first sanity image: {section['images'][0]}"))
    return "".join(parts)


def _grid(out: Path, section: dict, thumbs: dict) -> Path:
    """Rows: methods and the control; columns: the original, then each cascading step."""
    steps = [thumbs["original"][0], *thumbs["cascading"]]
    methods = sorted({key.rsplit("/", 1)[0] for key in steps[0]})
    rows = {m: [step[f"{m}/0"] for step in steps] for m in methods}
    columns = ["original", *[f"top {s['layers']}" for s in section["cascading"]["steps"]]]
    return plots.sanity_grid(rows, columns, out / "sanity_grid.png")


def _image_table(images: list[dict]) -> str:
    methods = sorted({m for i in images for m in i["methods"]})
    header = ["image", "prediction", "p"]
    for m in methods:
        header += [f"{esc(m)} del", f"{esc(m)} ins"]
    rows = []
    for image in images:
        row = [esc(image["name"]), esc(image["label"]), number(image["prob"])]
        for m in methods:
            entry = image["methods"].get(m, {})
            row += [number(entry.get("deletion_auc")), number(entry.get("insertion_auc"))]
        rows.append(row)
    return table(header, rows, left=2)


def _overlays(out: Path, crops: dict, maps: dict, opts: dict) -> str:
    parts = []
    for name in list(crops)[: opts["overlays"]]:
        path = plots.overlay_strip(
            crops[name], maps[name], out / "overlays" / f"{Path(name).stem}.png"
        )
        parts.append(html.figure(path, name))
    return "".join(parts)


def write_compare(
    out: Path, result: dict, crops: dict[str, np.ndarray], maps: dict[str, dict[str, np.ndarray]]
) -> None:
    """The compare report folder: fidelity table, histograms, side-by-side overlays."""
    _prepare(out)
    _json(out, result)
    a, b, summary = result["model_a"], result["model_b"], result["summary"]
    rows = [
        [esc(m), mean_std(s["spearman"]), mean_std(s["ssim"]), mean_std(s["top_k_iou"])]
        for m, s in summary["methods"].items()
    ]
    fidelity = table(["method", "Spearman", "SSIM", f"top-{result['top_k']:g} IoU"], rows)
    fidelity += f"<p class=note>Top-1 agreement: {number(summary['top1_agreement'])}</p>"
    models = table(
        ["", "A", "B"],
        [
            ["model", esc(a["where"]), esc(b["where"])],
            ["methods", esc(", ".join(a["methods"])), esc(", ".join(b["methods"]))],
            ["target", esc(a["target"]), esc(b["target"])],
            ["dtype", esc(a["dtype"]), esc(b["dtype"])],
        ],
    )
    hist = plots.compare_histograms(result["images"], out / "fidelity_histograms.png")
    per_image = table(
        ["image", "A says", "B says", "agree", *[f"{esc(m)} Spearman" for m in result["methods"]]],
        [
            [
                esc(i["name"]),
                esc(i["label_a"]),
                esc(i["label_b"]),
                number(i["top1_agree"]),
                *[number(i["methods"][m]["spearman"]) for m in result["methods"]],
            ]
            for i in result["images"]
        ],
        left=3,
    )
    overlays = []
    for name in list(crops)[:12]:
        pair = {
            f"{side.upper()} {m}": maps[name][f"{side}/{m}"]
            for m in result["methods"]
            for side in "ab"
        }
        path = plots.overlay_strip(crops[name], pair, out / "overlays" / f"{Path(name).stem}.png")
        overlays.append(html.figure(path, name))
    sections = [
        ("Models", models),
        ("Fidelity of B to A", fidelity + html.figure(hist, "per-image fidelity")),
        ("Images", per_image + "".join(overlays)),
    ]
    html.write(out / "report.html", f"edgesal compare: {a['where']} vs {b['where']}", sections)


def write_records(
    out: Path,
    result: dict,
    crops: dict[str, np.ndarray],
    maps: dict[str, dict[str, np.ndarray]],
    overlays: int,
) -> None:
    """The records audit folder: identity, what the device decided, and (with the frames) the
    fidelity and faithfulness of its maps."""
    _prepare(out)
    _json(out, result)
    records, device = result["records"], result["device"]
    identity = table(
        ["", ""],
        [
            ["records", esc(records["path"])],
            ["model", esc(result["model"]["where"])],
            ["sha256", esc(result["model"]["sha256"][:16] + "…")],
            ["recorded as", esc(", ".join(records["recorded_as"]))],
            ["torn bytes at the end", str(records["truncated_bytes"])],
        ],
    )
    decided = table(
        ["", ""],
        [
            ["frames", str(device["frames"])],
            ["maps", str(device["maps"])],
            ["methods", esc(device["methods"])],
            ["mean top-1 score", number((device["score"] or {}).get("mean"))],
            ["self-checks", str(device["selfchecks"])],
            ["self-check faithful rate", number(device["faithful_rate"])],
            ["governor events", str(device["events"])],
            ["most frequent labels", esc(device["labels"])],
        ],
    )
    sections = [("Model identity", identity), ("What the device decided", decided)]
    if result["images"]:
        summary = result["summary"]
        fidelity = table(
            ["", "Spearman", "SSIM", "top-10% IoU", "top-1 agreement"],
            [
                [
                    "device vs this machine",
                    *[mean_std(summary["fidelity"][k]) for k in ("spearman", "ssim", "top_k_iou")],
                    number(summary["top1_agreement"]),
                ]
            ],
        )
        scores = _summary_table({"methods": summary["methods"], "controls": {}})
        path = plots.curves(
            summary["methods"],
            {},
            ("deletion", "insertion"),
            out / "curves_deletion_insertion.png",
            "device maps vs this machine's maps on the same crops",
        )
        sections.append(("Device maps vs this machine", fidelity + scores + html.figure(path, "")))
        rows = [
            [
                esc(i["name"]),
                str(i["frame"]),
                esc(i["method"]),
                number(i["top1_agree"]),
                number(i["fidelity"]["spearman"]),
                number(i["methods"]["device"]["deletion_auc"]),
                number(i["methods"]["workstation"]["deletion_auc"]),
            ]
            for i in result["images"]
        ]
        header = ["image", "frame", "method", "top-1 agree", "Spearman", "del device", "del here"]
        strips = [
            html.figure(
                plots.overlay_strip(
                    crops[k], maps[k], out / "overlays" / f"{k.replace(' ', '_')}.png"
                ),
                k,
            )
            for k in list(crops)[:overlays]
        ]
        sections.append(("Frames", table(header, rows, left=3) + "".join(strips)))
    html.write(out / "report.html", f"edgesal records audit: {records['path']}", sections)
