"""A report as a list of blocks, rendered both as Markdown and as a standalone HTML page.

One structure, two renderers: no Markdown is parsed. Images are referenced by paths relative to
the run directory, so the report can be moved with its directory.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Document"]

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "color:#222}table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}"
    "th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}"
    "th:first-child,td:first-child{text-align:left}img{max-width:100%}"
    "figure{margin:1rem 0}figcaption{font-size:.85rem;color:#555}"
    "pre{background:#f5f5f5;padding:.6rem;overflow-x:auto;font-size:.8rem}"
)


@dataclass
class Document:
    """A report: a title and blocks (``("heading", text)``, ``("text", text)``,
    ``("table", header, rows)``, ``("image", path, caption)``, ``("code", text)``)."""

    title: str
    blocks: list[tuple[Any, ...]] = field(default_factory=list)

    def heading(self, text: str) -> Document:
        self.blocks.append(("heading", text))
        return self

    def text(self, text: str) -> Document:
        self.blocks.append(("text", text))
        return self

    def table(self, header: list[str], rows: list[list[Any]]) -> Document:
        self.blocks.append(
            ("table", [str(h) for h in header], [[_cell(c) for c in r] for r in rows])
        )
        return self

    def image(self, path: str, caption: str) -> Document:
        self.blocks.append(("image", path, caption))
        return self

    def code(self, text: str) -> Document:
        self.blocks.append(("code", text))
        return self

    def raw_markdown(self, text: str) -> Document:
        """Markdown shown verbatim in report.md (and preformatted in the HTML page)."""
        self.blocks.append(("raw", text))
        return self

    def images(self) -> list[str]:
        """Relative paths of every image the report shows."""
        return [b[1] for b in self.blocks if b[0] == "image"]

    # ------------------------------------------------------------------------------ Markdown
    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                out += [f"## {block[1]}", ""]
            elif kind == "text":
                out += [block[1], ""]
            elif kind == "table":
                out += [markdown_table(block[1], block[2]), ""]
            elif kind == "image":
                out += [f"![{block[2]}]({block[1]})", "", f"*{block[2]}*", ""]
            elif kind == "code":
                out += ["```", block[1].rstrip("\n"), "```", ""]
            elif kind == "raw":
                out += [block[1].rstrip("\n"), ""]
        return "\n".join(out).rstrip() + "\n"

    # ------------------------------------------------------------------------------ HTML
    def to_html(self) -> str:
        e = html.escape
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{e(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{e(self.title)}</h1>",
        ]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                out.append(f"<h2>{e(block[1])}</h2>")
            elif kind == "text":
                out.append(f"<p>{e(block[1])}</p>")
            elif kind == "table":
                head = "".join(f"<th>{e(h)}</th>" for h in block[1])
                body = "".join(
                    "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in block[2]
                )
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif kind == "image":
                out.append(
                    f'<figure><img src="{e(block[1], quote=True)}" alt="{e(block[2], quote=True)}">'
                    f"<figcaption>{e(block[2])}</figcaption></figure>"
                )
            elif kind in ("code", "raw"):
                out.append(f"<pre>{e(block[1])}</pre>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])
