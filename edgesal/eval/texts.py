"""``edgesal eval MODEL --texts FILE --tokenizer tokenizer.json -o OUT``: the token evaluation of
:mod:`edgesal.eval.tokens` from the command line, and its report folder.

OUT gets report.json (every number), report.md (the table of docs/tokens.md), curves.png and
report.html: one self-contained page (:mod:`edgesal.eval.html`) with the table of rankings, the
mean curves, the weight-randomization steps when ``--sanity-texts N`` ran them, and the tokens of
the first texts shaded by each ranking's scores side by side.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from edgesal.errors import EdgesalError, InputError
from edgesal.eval import html
from edgesal.eval.html import esc, number, table
from edgesal.eval.sanity import checkpoint_counts, parametric_layers, verdict
from edgesal.eval.tokens import (
    RANDOM,
    TokenCurves,
    default_baseline,
    evaluate_texts,
    markdown,
    model_maps,
    real_positions,
    rollout_from,
    sanity_cascade,
    special_ids,
    token_export_options,
    token_forward,
)
from edgesal.export import save
from edgesal.onnx_io import load_model
from edgesal.runtimes.errors import DeviceError
from edgesal.runtimes.model import probabilities
from edgesal.runtimes.text import TextExplainer, TokenExplanation
from edgesal.tokens.explain import read_lines, score_cell
from edgesal.tokens.export import export_token_saliency

EXAMPLE_TEXTS = 5  # texts shown token by token in report.html


def reexporter(
    model: onnx.ModelProto, tokenizer: str | Path, folder: Path
) -> Callable[[onnx.ModelProto], TextExplainer]:
    """``export(forward) -> TextExplainer``: ``forward`` exported with the flags ``model`` was
    exported with (run-time target), saved under ``folder``, opened with ``tokenizer``."""
    options, tokens = token_export_options(model)
    counter = iter(range(1 << 30))

    def export(forward: onnx.ModelProto) -> TextExplainer:
        path = folder / f"variant{next(counter)}.onnx"
        save(export_token_saliency(forward, options, tokens), path)
        return TextExplainer(path, tokenizer)

    return export


def sanity_source(args) -> onnx.ModelProto:
    """MODEL (``args.model``), checked up front for ``--sanity-texts``: an ONNX token saliency
    model whose network can be pruned out of it, a valid ``--sanity-steps`` and threshold."""
    flag, path = f"--sanity-texts {args.sanity_texts}", args.model
    if Path(path).suffix.lower() != ".onnx":
        raise InputError(
            f"{flag}: {path} is not an ONNX model; the check re-exports the network, so "
            "evaluate the .sal.onnx this model was converted from"
        )
    if not 0 < args.sanity_threshold <= 1:
        raise InputError(f"--sanity-threshold {args.sanity_threshold}: must be in (0, 1]")
    model = load_model(path)
    forward = token_forward(model, f"{flag}: {path}")
    checkpoint_counts(len(parametric_layers(forward)), args.sanity_steps)  # names a bad flag
    return model


def sanity_section(
    model: onnx.ModelProto, texts: list[str], special: tuple[int, ...], args
) -> dict:
    """The weight-randomization cascade on the network inside ``model`` (from
    :func:`sanity_source`): per step the mean Spearman of every map, and each map's verdict
    after the full cascade."""
    flag = f"--sanity-texts {args.sanity_texts}"
    forward = token_forward(model, f"{flag}: {args.model}")
    with tempfile.TemporaryDirectory(prefix="edgesal-sanity-") as tmp:
        try:
            export = reexporter(model, args.tokenizer, Path(tmp))
            steps = sanity_cascade(
                forward, export, texts, special, args.seed, args.sanity_steps, not args.no_progress
            )
        except EdgesalError as exc:
            raise InputError(f"{flag}: exporting {args.model}'s network again: {exc}") from exc
    final = steps[max(steps)]
    return {
        "texts": texts,
        "layers": max(steps),
        "threshold": args.sanity_threshold,
        "steps": [{"layers": k, "spearman": v} for k, v in sorted(steps.items())],
        "verdicts": {
            name: {
                "final_spearman": rho,
                **verdict(rho, args.sanity_threshold, False, "parameters"),
            }
            for name, rho in final.items()
        },
    }


def run_texts(args) -> int:
    """``edgesal eval MODEL --texts FILE --tokenizer tokenizer.json -o OUT [--sanity-texts N]``."""
    if not args.tokenizer:
        raise InputError("--texts needs --tokenizer tokenizer.json")
    if args.sanity_texts < 0:
        raise InputError(f"--sanity-texts {args.sanity_texts}: must be >= 0")
    try:
        explainer = TextExplainer(args.model, args.tokenizer)
    except DeviceError as exc:  # the runtime's errors: no token model, a bad tokenizer
        raise InputError(str(exc)) from exc
    source = sanity_source(args) if args.sanity_texts else None
    texts = read_lines(Path(args.texts), "--texts")
    if args.max_images:
        texts = texts[: args.max_images]
    baseline = default_baseline(explainer) if args.baseline_token is None else args.baseline_token
    special = special_ids(explainer)
    curves = evaluate_texts(explainer, texts, baseline, special, args.seed, not args.no_progress)
    sanity = (
        sanity_section(source, texts[: args.sanity_texts], special, args)
        if source is not None
        else None
    )
    final = {k: v["final_spearman"] for k, v in (sanity or {}).get("verdicts", {}).items()}
    for name, c in sorted(curves.items(), key=lambda kv: kv[1].deletion_auc):
        rho = f"  Spearman after randomizing all layers {final[name]:.3f}" if name in final else ""
        print(
            f"{name}: deletion_auc {c.deletion_auc:.3f}  insertion_auc {c.insertion_auc:.3f}{rho}"
        )
    out = Path(args.output)
    run = {
        "model": str(args.model),
        "texts": len(texts),
        "baseline_token": baseline,
        "special_tokens": list(special),
        "rollout_from": rollout_from(explainer),
    }
    examples = [(t, explainer.explain(t)) for t in texts[:EXAMPLE_TEXTS]]
    write_report(curves, sanity, run, examples, special, out)
    print(f"wrote {out}/report.html, report.md, report.json and curves.png")
    return 0


def write_report(
    curves: dict[str, TokenCurves],
    sanity: dict | None,
    run: dict,
    examples: list[tuple[str, TokenExplanation]],
    special: tuple[int, ...],
    folder: Path,
) -> Path:
    """report.json, report.md, curves.png (mean curves, random dotted) and report.html;
    returns the HTML page's path."""
    from edgesal.eval.plots import curves as plot_curves

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"-o {folder}: cannot create the report folder: {exc}") from exc
    title = f"{Path(run['model']).name}: {run['texts']} texts"
    entries = {
        name: {
            "deletion_auc": c.deletion_auc,
            "insertion_auc": c.insertion_auc,
            "mean_curves": {"deletion": c.deletion.tolist(), "insertion": c.insertion.tolist()},
        }
        for name, c in curves.items()
    }
    report = {"title": title, "run": run, "rankings": entries, "sanity": sanity}
    (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    steps = {s["layers"]: s["spearman"] for s in sanity["steps"]} if sanity else None
    (folder / "report.md").write_text(f"# {title}\n\n{markdown(curves, steps)}\n")
    methods = {k: v for k, v in entries.items() if k != RANDOM}
    controls = {k: v for k, v in entries.items() if k == RANDOM}
    plot = plot_curves(
        methods, controls, ("deletion", "insertion"), folder / "curves.png", title, "real tokens"
    )
    sections = [
        ("Model and run", _run_table(run)),
        ("Which rankings move the output", _rankings_table(curves, sanity)),
        ("Mean curves", html.figure(plot, "probability of the explained class, mean over texts")),
    ]
    if sanity:
        sections.append(("Weight randomization", _sanity_table(sanity)))
    if examples:
        query = str(run["rollout_from"])
        blocks = "".join(_example(t, r, query, special) for t, r in examples)
        sections.append(("Example texts", blocks))
    return html.write(folder / "report.html", f"edgesal eval: {title}", sections)


def _run_table(run: dict) -> str:
    rows = [
        ["model", esc(run["model"])],
        ["texts", str(run["texts"])],
        ["baseline token (replaces deleted tokens)", str(run["baseline_token"])],
        ["special tokens (never ranked)", esc(run["special_tokens"])],
        ["attention row", esc(run["rollout_from"])],
    ]
    return table(["", ""], rows)


def _rankings_table(curves: dict[str, TokenCurves], sanity: dict | None) -> str:
    """A row per ranking, best deletion AUC first; the Spearman columns when the check ran."""
    verdicts = (sanity or {}).get("verdicts", {})
    header = ["ranking", "deletion AUC ↓", "insertion AUC ↑"]
    if sanity:
        header += [f"Spearman after randomizing all {sanity['layers']} layers", "verdict"]
    rows = []
    for name, c in sorted(curves.items(), key=lambda kv: kv[1].deletion_auc):
        label = f"{esc(name)} (control)" if name == RANDOM else esc(name)
        row = [label, number(c.deletion_auc), number(c.insertion_auc)]
        if sanity:
            v = verdicts.get(name)
            row += [number(v["final_spearman"]), html.verdict_cell(v)] if v else ["–", "–"]
        rows.append(row)
    note = (
        '<p class="note">Deletion replaces real tokens by the baseline token in each ranking\'s '
        "order (the explained class's probability should fall fast: low AUC is good); insertion "
        "restores them in that order from all replaced (high AUC is good). A ranking no better "
        "than the random control does not say what moves the output.</p>"
    )
    return table(header, rows) + note


def _sanity_table(sanity: dict) -> str:
    """Rows: maps; columns: top k layers re-initialized (mean Spearman with the original)."""
    steps = sanity["steps"]
    header = ["map", *[f"top {s['layers']}" for s in steps], "verdict", "note"]
    rows = [
        [
            esc(name),
            *[number(s["spearman"].get(name)) for s in steps],
            html.verdict_cell(v),
            esc(v["note"]),
        ]
        for name, v in sanity["verdicts"].items()
    ]
    note = (
        f'<p class="note">Parametric layers re-initialized from the top on the ONNX graph '
        f"(cascading, {sanity['layers']} layers), the network exported again with the model's "
        f"flags, maps compared with the original's on {len(sanity['texts'])} text(s), real tokens "
        f"only. Pass: mean Spearman after the full cascade &lt; {sanity['threshold']}.</p>"
    )
    return note + table(header, rows, left=1)


def _example(text: str, result: TokenExplanation, query: str, special: tuple[int, ...]) -> str:
    """The real tokens of one text, a column per model map, each shaded by its score divided by
    its largest absolute score over those tokens."""
    keep = real_positions(result, special)
    maps = {name: _scaled(values[keep]) for name, values in model_maps(result, query).items()}
    header = "<th class=l>token</th>" + "".join(f"<th>{esc(name)}</th>" for name in maps)
    rows = "".join(
        f"<tr><td class=l>{esc(result.tokens[p])}</td>"
        + "".join(score_cell(float(v[i])) for v in maps.values())
        + "</tr>"
        for i, p in enumerate(keep)
    )
    head = (
        f"<h3>{esc(text)}</h3><p class=note>prediction: <b>{esc(result.label)}</b> (p "
        f"{number(float(probabilities(result.scores)[result.target]))})</p>"
    )
    return f"{head}<table><tr>{header}</tr>{rows}</table>"


def _scaled(values: np.ndarray) -> np.ndarray:
    top = float(np.max(np.abs(values))) if values.size else 0.0
    return values / top if top > 0 else values
