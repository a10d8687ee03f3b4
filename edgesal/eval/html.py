"""``report.html``: one self-contained page (PNG plots embedded as data URIs) that opens from disk.

No scripts, no external files: what the page shows is what ``report.json`` holds, as tables, plus
every PNG of the report folder.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
.pass { color: #176317; font-weight: 600; } .fail { color: #b00020; font-weight: 600; }
figure { margin: 12px 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #555; } .note { font-size: 13px; color: #444; }
"""


def esc(value: object) -> str:
    return html.escape(str(value))


def number(value: object, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def mean_std(entry: dict | None) -> str:
    if not entry or entry.get("mean") is None:
        return "–"
    return f"{entry['mean']:.3f} ± {entry['std']:.3f}"


def table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """An HTML table; cells are already escaped; the first ``left`` columns align left."""

    def cells(values: list[str], tag: str) -> str:
        return "".join(
            f"<{tag}{' class=l' if i < left else ''}>{v}</{tag}>" for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    return f"<table><tr>{cells(header, 'th')}</tr>{body}</table>"


def figure(path: Path, caption: str) -> str:
    """The PNG at ``path`` embedded as a data URI, with its file name and a caption."""
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{esc(path.name)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(path.name)}: {esc(caption)}</figcaption></figure>"
    )


def verdict_cell(entry: dict) -> str:
    if entry["passed"]:
        return '<span class="pass">pass</span>'
    return '<span class="fail">FLAGGED</span>'


def page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{esc(name)}</h2>{content}" for name, content in sections)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{esc(title)}</h1>{body}</body></html>"
    )


def write(path: Path, title: str, sections: list[tuple[str, str]]) -> Path:
    path.write_text(page(title, sections), encoding="utf-8")
    return path
