"""Reports of a dataset's run: Markdown and self-contained HTML, figures, and the index page.

* :func:`write_report` -- ``report.md``, ``report.html`` and ``figures/`` for one run.
* :func:`write_index` -- ``OUTPUT/index.html`` listing every dataset's latest run.
* :func:`write_segmentation_report` -- the report of a segmentation run without ground truth
  (objects per image, their sizes, outliers, a sample): :mod:`segpipe.report.segmentation`.
* :mod:`segpipe.report.runs` -- the per-dataset run history (``runs.jsonl``).
"""

from segpipe.report.document import Document, Figure, Notice, Section, Table, Text, to_html, to_markdown
from segpipe.report.history import read_history
from segpipe.report.index import write_index
from segpipe.report.runs import append_run, headline, machine, read_runs
from segpipe.report.segmentation import choose_sample, flag_outliers, read_tables, write_segmentation_report
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
    "choose_sample",
    "flag_outliers",
    "headline",
    "machine",
    "rank_images",
    "read_history",
    "read_runs",
    "read_tables",
    "to_html",
    "to_markdown",
    "write_index",
    "write_report",
    "write_segmentation_report",
]
