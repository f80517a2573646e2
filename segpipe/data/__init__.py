"""Where images come from and how they are kept: the catalog, the readers, the stores, ingest.

- :mod:`~segpipe.data.catalog`: datasets declared in ``data_catalog.yaml``, resolved to files;
- :mod:`~segpipe.data.ctc`: Cell Tracking Challenge sequence folders as catalog records;
- :mod:`~segpipe.data.readers`: TIFF/OME-TIFF, NIfTI, PNG and slice folders, read lazily;
- :mod:`~segpipe.data.validate`: what an image or label array must satisfy;
- :mod:`~segpipe.data.store`: the OME-Zarr dataset store (:class:`~segpipe.data.store.ImageStore`);
- :mod:`~segpipe.data.ingest`: a catalog dataset into its store, streamed and atomic.
"""
