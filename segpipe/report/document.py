"""A report as a small document tree, rendered to Markdown and to self-contained HTML.

Both renderings come from the same :class:`Document`, so they say the same thing: Markdown
links the figures as files under ``figures/``; HTML embeds them as base64 PNG ``data:`` URIs
and inlines its style sheet, so the page needs nothing but itself (it can be mailed, or
opened from an artifact store, and still show everything).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2


@dataclass(frozen=True)
class Text:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Notice:
    """A warning a reader must not miss: a quoted, bold-led paragraph in Markdown, a red box in HTML."""

    text: str
    title: str = "Warning"


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells.

    Attributes:
        key: Short identifier (HTML anchor, Prefect artifact key suffix).
        title: Caption.
        columns: Column headers.
        rows: One list of cells per row, as long as ``columns``.
        note: Text shown under the table.
    """

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.key!r}: row {row} has {len(row)} cells for {len(self.columns)} columns")

    def records(self) -> list[dict[str, str]]:
        """Rows as ``{column: cell}`` dicts (the shape of a Prefect table artifact)."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class Figure:
    """A PNG figure written next to the report (``figures/NAME.png``)."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Details:
    """Preformatted text shown collapsed in HTML and as a code block in Markdown."""

    summary: str
    text: str


Block = Text | Notice | Table | Figure | Details


@dataclass(frozen=True)
class Section:
    """A titled part of the report."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """HTML id of the section."""
        return "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


@dataclass(frozen=True)
class Document:
    """The whole report: a title, an introduction and sections."""

    title: str
    intro: list[Block]
    sections: list[Section]

    def tables(self) -> list[Table]:
        """Every table, in order."""
        return [b for s in [Section("", self.intro), *self.sections] for b in s.blocks if isinstance(b, Table)]

    def figures(self) -> list[Figure]:
        """Every figure, in order."""
        return [b for s in [Section("", self.intro), *self.sections] for b in s.blocks if isinstance(b, Figure)]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Text):
        return [block.text, ""]
    if isinstance(block, Notice):
        return [f"> **{block.title}:** {block.text}", ""]
    if isinstance(block, Table):
        lines = [f"**{block.title}**", ""] if block.title else []
        lines.append("| " + " | ".join(_md_cell(c) for c in block.columns) + " |")
        lines.append("|" + " --- |" * len(block.columns))
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        lines.append("")
        if block.note:
            lines += [f"*{block.note}*", ""]
        return lines
    if isinstance(block, Figure):
        return [f"![{block.caption}](figures/{block.path.name})", "", f"*{block.caption}*", ""]
    return [f"<details><summary>{block.summary}</summary>", "", "```", block.text, "```", "", "</details>", ""]


def to_markdown(doc: Document) -> str:
    """Markdown with figures linked as ``figures/NAME.png``."""
    lines = [f"# {doc.title}", ""]
    for block in doc.intro:
        lines += _md_block(block)
    for section in doc.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _md_block(block)
    return "\n".join(lines).rstrip() + "\n"


def png_data_uri(path: Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("segpipe.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["style"] = env.loader.get_source(env, "style.css")[0]
    env.tests["text"] = lambda b: isinstance(b, Text)
    env.tests["notice"] = lambda b: isinstance(b, Notice)
    env.tests["table"] = lambda b: isinstance(b, Table)
    env.tests["figure"] = lambda b: isinstance(b, Figure)
    env.tests["details"] = lambda b: isinstance(b, Details)
    env.filters["data_uri"] = png_data_uri
    return env


def render_template(name: str, **context) -> str:
    """Render one of the package's HTML templates (autoescaped, strict about missing names)."""
    return _environment().get_template(name).render(**context)


def to_html(doc: Document) -> str:
    """A self-contained HTML page: inline CSS, figures as base64 PNG, no scripts, no external links."""
    return render_template("report.html.j2", doc=doc)
