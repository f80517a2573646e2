"""The optional bioimageio extra: required where a package is written or read, and kept quiet."""

from __future__ import annotations

import contextlib
import gc
import warnings
from collections.abc import Iterator

from segpipe.errors import ModelError

INSTALL_HINT = "pip install -c constraints.txt 'segpipe[bioimageio]'"


def require_bioimageio() -> None:
    try:
        import bioimageio.core  # noqa: F401
        import bioimageio.spec  # noqa: F401
    except ImportError as err:
        raise ModelError(
            f"BioImage Model Zoo packages need the optional bioimageio packages ({err.name} is missing): {INSTALL_HINT}"
        ) from None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """bioimageio's log lines off; torch's deprecation notices for TorchScript (which the format
    needs) and the ResourceWarnings of the files bioimageio.spec 0.5.12 leaves open when it hashes
    them (``FileDescr.validate_sha256``) not shown."""
    from loguru import logger

    logger.disable("bioimageio")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r"unclosed file", category=ResourceWarning)
            try:
                yield
            finally:
                gc.collect()  # the leaked files of reference cycles closed here, while the filter holds
    finally:
        logger.enable("bioimageio")
