"""The document tree renders the same content to Markdown and to self-contained HTML."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import matplotlib.pyplot as plt
import pytest

from segpipe.report.document import Details, Document, Figure, Notice, Section, Table, Text, png_data_uri, to_html, to_markdown


class TableCells(HTMLParser):
    """Collects the text of every table cell, per table id, and every attribute value."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.attrs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        if tag == "table":
            self._table = dict(attrs)["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture
def document(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    png = tmp_path / "figures" / "line.png"
    png.parent.mkdir()
    fig.savefig(png)
    plt.close(fig)
    table = Table("scores", "Scores", ["measure", "value"], [["SEG <b>", "0.5000 [0.4, 0.6]"], ["a|b", "1"]], "a note")
    return Document(
        "report: <x>",
        [Notice("model <b> loses"), Text("intro & more")],
        [
            Section("Scores", [table, Figure(png, "a line")]),
            Section("Card", [Details("json", '{"a": "<script>"}')]),
        ],
    )


def test_markdown(document):
    md = to_markdown(document)
    assert md.startswith("# report: <x>\n\n> **Warning:** model <b> loses\n\nintro & more\n")
    assert "| measure | value |\n| --- | --- |\n| SEG <b> | 0.5000 [0.4, 0.6] |\n| a\\|b | 1 |" in md
    assert "![a line](figures/line.png)" in md
    assert "## Scores" in md and "## Card" in md and "*a note*" in md


def test_html_is_self_contained_and_escaped(document):
    html = to_html(document)
    parser = TableCells()
    parser.feed(html)
    # the same cells as the Markdown table, text escaped (no injected tags)
    assert parser.tables["table-scores"] == [["measure", "value"], ["SEG <b>", "0.5000 [0.4, 0.6]"], ["a|b", "1"]]
    assert "<script" not in html.lower() and "script" not in parser.tags
    assert "&lt;script&gt;" in html and "report: &lt;x&gt;" in html
    notice = '<div class="notice" role="alert"><strong>Warning:</strong> model &lt;b&gt; loses</div>'
    assert html.index(notice) < html.index("<p>intro &amp; more</p>")
    sources = [v for tag, k, v in parser.attrs if k in ("src", "href")]
    assert all(s.startswith(("data:image/png;base64,", "#")) for s in sources), sources
    image = next(v for tag, k, v in parser.attrs if tag == "img" and k == "src")
    assert base64.b64decode(image.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"https?:|//|url\(|@import", text)  # nothing fetched from anywhere
    assert '"Segoe UI"' in html  # the inline style sheet is not HTML-escaped


def test_tables_and_records(document):
    (table,) = document.tables()
    assert table.records() == [{"measure": "SEG <b>", "value": "0.5000 [0.4, 0.6]"}, {"measure": "a|b", "value": "1"}]
    assert [f.caption for f in document.figures()] == ["a line"]
    with pytest.raises(ValueError, match="cells"):
        Table("bad", "", ["a", "b"], [["only one"]])


def test_png_data_uri_refuses_other_files(tmp_path):
    other = tmp_path / "x.png"
    other.write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PNG"):
        png_data_uri(other)
