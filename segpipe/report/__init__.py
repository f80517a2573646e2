"""Reports of a dataset's run: Markdown and self-contained HTML, figures, and the index page.

* :func:`write_report` -- ``report.md``, ``report.html`` and ``figures/`` for one run.
* :func:`write_index` -- ``OUTPUT/index.html`` listing every dataset's latest run.
* :mod:`segpipe.report.runs` -- the per-dataset run history (``runs.jsonl``).
"""

from segpipe.report.document import Document, Figure, Notice, Section, Table, Text, to_html, to_markdown
from segpipe.report.history import read_history
from segpipe.report.index import write_index
from segpipe.report.runs import append_run, headline, machine, read_runs
from segpipe.report.write import Report, rank_images, write_report

__all__ = [
    "Document",
    "Figure",
    "Notice",
    "Report",
    "Section",
    "Table",
    "Text",
    "append_run",
    "headline",
    "machine",
    "rank_images",
    "read_history",
    "read_runs",
    "to_html",
    "to_markdown",
    "write_index",
    "write_report",
]
