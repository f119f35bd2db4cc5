"""Build and runtime configuration report."""

import os
import platform
import sys

from . import _openmp
from ._version import __version__


def config():
    """A dict of the build's OpenMP status, the BLAS the kernels call and the threads they use by
    default."""
    import numpy as np
    import scipy
    from ._engine import blas
    return {
        "fastdecode": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "openmp": _openmp.openmp_enabled(),
        "blas": blas.describe(),
        "threads": max(1, _openmp.max_threads()),
        "cpu_count": os.cpu_count(),
    }


def show_config(file=None):
    """Print the build's configuration: versions, OpenMP status and the default thread count.

    Parameters
    ----------
    file : file-like, optional
        Where to print, default ``sys.stdout``.

    Examples
    --------
    >>> import fastdecode as fd
    >>> fd.show_config()  # doctest: +SKIP
    fastdecode: 0.1.0
    ...
    openmp:     True
    threads:    2
    """
    cfg = config()
    for key, value in cfg.items():
        print("%-11s %s" % (key + ":", value), file=file or sys.stdout)
    return None
