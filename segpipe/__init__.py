"""segpipe: batch segmentation of microscopy and medical image stacks."""

__version__ = "0.1.0"
