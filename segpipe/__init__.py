"""segpipe: batch segmentation of microscopy and medical image stacks."""

import os

__version__ = "0.1.0"

# OpenMP threads that wait for each other spin for a while before they sleep (libgomp: 300,000
# spins). On a machine where another process competes for the cores, a thread spinning for a
# partner that is not running burns the time the partner needs: CPU training ran at 0.07x its
# quiet speed beside one busy process. A short spin keeps 0.54x there, for about a tenth of the
# quiet speed (benchmarks/train.py measures both). Set before torch starts its OpenMP runtime;
# a value the user set wins.
OPENMP_SPINCOUNT = "1000"
os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPINCOUNT)
