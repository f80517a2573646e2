"""The ``segpipe`` command line: ``segpipe run DATASET`` for everything, one command per stage otherwise.

Options come from the stages' parameter models (:mod:`segpipe.cli.options`): each is declared
once, with its help, on the model the library, the flows and the deployments use.
"""

from segpipe.cli import models as _models, run as _run, segment as _segment, stages as _stages  # noqa: F401  (register the commands)
from segpipe.cli.app import app, entry, main

__all__ = ["app", "entry", "main"]
