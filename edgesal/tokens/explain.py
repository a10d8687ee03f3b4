"""``edgesal explain-text MODEL --tokenizer tokenizer.json "text"``: the prediction and each
token's score, coloured in the terminal; ``--html`` puts gradient, attention rollout and attention
gradient side by side per token; ``--json`` writes every score; ``--file`` explains one text per
line with a progress bar.
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

from edgesal.errors import InputError
from edgesal.runtimes.backends.base import BackendOptions
from edgesal.runtimes.text import TextExplainer, TokenExplanation, write_records

MAX_LINES_BYTES = 64 << 20
_RESET = "\033[0m"


def add_parser(sub) -> None:
    """Register the ``explain-text`` subcommand."""
    p = sub.add_parser(
        "explain-text",
        help="explain a text classifier's prediction per token (token saliency model)",
        description="Tokenize TEXT with a tokenizers JSON file, run a model exported with "
        "'edgesal export --input input_ids' once, and show each token's score.",
    )
    p.add_argument("model", help="token saliency model (.onnx or .tflite)")
    p.add_argument("text", nargs="*", help="text(s) to explain")
    p.add_argument("--tokenizer", required=True, help="tokenizer.json (Hugging Face tokenizers)")
    p.add_argument("--file", help="a UTF-8 file with one text per line")
    p.add_argument("--map", help="which map colours the terminal (default: the first gradient map)")
    p.add_argument("--html", help="write an HTML page with every map side by side")
    p.add_argument("--json", help="write all scores as JSON ('-' for stdout)")
    p.add_argument("--records", help="write a .salrec file (map kind 'tokens', one frame a text)")
    p.add_argument(
        "--no-truncate",
        action="store_true",
        help="refuse texts longer than the model's T tokens instead of truncating them",
    )
    threads = BackendOptions.threads
    p.add_argument("--threads", type=int, default=threads, help=f"inference threads ({threads})")
    p.set_defaults(func=run, trailing="text")


def run(args) -> int:
    from tqdm import tqdm

    texts = list(args.text) + (read_lines(Path(args.file), "--file") if args.file else [])
    if not texts:
        raise InputError("explain-text: give TEXT arguments or --file LINES.txt")
    explainer = TextExplainer(
        args.model, args.tokenizer, not args.no_truncate, BackendOptions(threads=args.threads)
    )
    shown = args.map or next(iter(explainer.map_outputs))
    if shown not in explainer.map_outputs:
        raise InputError(f"--map {shown}: the model has {', '.join(explainer.map_outputs)}")
    many = len(texts) > 1 and args.file is not None
    results = []
    for text in tqdm(texts, desc="explaining", unit="text", disable=not many, file=sys.stderr):
        results.append(explainer.explain(text))
    if args.json != "-":
        for result in results:
            print(terminal(result, shown, color=sys.stdout.isatty()))
    if args.html:
        Path(args.html).write_text(page(texts, results), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    if args.records:
        write_records(args.records, explainer, results)
    if args.json:
        payload = json.dumps([as_json(t, r) for t, r in zip(texts, results, strict=True)], indent=1)
        if args.json == "-":
            print(payload)
        else:
            Path(args.json).write_text(payload, encoding="utf-8")
    return 0


def read_lines(path: Path, flag: str) -> list[str]:
    """The non-empty lines of a UTF-8 file (bounded size); errors name ``flag``."""
    if not path.is_file():
        raise InputError(f"{flag} {path}: no such file")
    if path.stat().st_size > MAX_LINES_BYTES:
        raise InputError(f"{flag} {path}: larger than {MAX_LINES_BYTES >> 20} MiB")
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise InputError(f"{flag} {path}: not UTF-8 text") from exc


def terminal(result: TokenExplanation, name: str, color: bool = True) -> str:
    """``label (p)`` then the tokens, each on a red background as strong as its |score|."""
    cut = " (truncated)" if result.truncated else ""
    head = f"{result.label}: score {result.scores[result.target]:.3f}{cut}  [{name}]"
    parts = []
    for token, scores in result.words():
        value = scores[name]
        if color:
            level = int(round(min(abs(value), 1.0) * 5))  # 256-colour cube: red 0..5
            code = 16 + 36 * 5 + 6 * (5 - level) + (5 - level)
            parts.append(f"\033[48;5;{code}m\033[38;5;16m{token}{_RESET}")
        else:
            parts.append(f"{token}({value:.2f})")
    return head + "\n" + " ".join(parts)


def as_json(text: str, result: TokenExplanation) -> dict:
    return {
        "text": text,
        "label": result.label,
        "target": result.target,
        "scores": [float(x) for x in result.scores],
        "truncated": result.truncated,
        "tokens": [
            {"token": token, **{k: round(v, 6) for k, v in scores.items()}}
            for token, scores in result.words()
        ],
    }


def page(texts: list[str], results: list[TokenExplanation]) -> str:
    """One HTML table per text: a row per token, a column per map, cells shaded by score."""
    blocks = []
    for text, result in zip(texts, results, strict=True):
        names = list(result.maps)
        header = "".join(f"<th>{html.escape(n)}</th>" for n in names)
        rows = []
        for token, scores in result.words():
            cells = "".join(score_cell(scores[n]) for n in names)
            rows.append(f"<tr><td>{html.escape(token)}</td>{cells}</tr>")
        blocks.append(
            f"<h2>{html.escape(text)}</h2><p>prediction: <b>{html.escape(result.label)}</b> "
            f"({result.scores[result.target]:.3f})</p><table><tr><th>token</th>{header}</tr>"
            + "".join(rows)
            + "</table>"
        )
    style = "td,th{padding:2px 8px;font-family:monospace}table{border-collapse:collapse}"
    head = f"<!doctype html><meta charset=utf-8><title>edgesal explain-text</title><style>{style}"
    return head + "</style>" + "".join(blocks)


def score_cell(value: float) -> str:
    """A table cell showing ``value``, shaded red (>= 0) or blue (< 0) as strong as |value|."""
    alpha = min(abs(value), 1.0)
    hue = "220,40,40" if value >= 0 else "40,80,220"
    return f'<td style="background:rgba({hue},{alpha:.2f})">{value:.3f}</td>'
