"""Exceptions users see: each message names the file or entry and the problem."""


class SegpipeError(Exception):
    """Base class of the errors the CLI reports without a traceback."""


class CatalogError(SegpipeError):
    """The catalog file or one of its entries is invalid."""


class InputError(SegpipeError):
    """An input file cannot be read or holds data the pipeline refuses."""


class StoreError(SegpipeError):
    """A zarr store is missing, incomplete or from another dataset."""
