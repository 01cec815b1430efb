"""One set of OpenMP worker threads at a time: a thread about to wait for another thread's model work hands back
its own idle workers first.

torch's CPU kernels run on OpenMP, and GNU OpenMP (the runtime the Linux wheels ship) keeps a team of worker
threads for every OS thread that ever ran a parallel kernel. Once those teams together hold more threads than
there are cores, it stops letting any worker spin between kernels: each of the ~170 kernels of a decoding step
then waits for a sleeping worker to be woken. Measured on a 2-core CPU with the default int8 model: a thread
that had loaded the model (or embedded a query, or run an earlier answer) left idle beside the decode thread
slowed decoding from ~36 to ~26 tokens/s. Pausing the idle team (OpenMP 5's ``omp_pause_resource_all``) frees
it; the next kernel that thread runs builds a new one (well under a millisecond).
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

OMP_PAUSE_SOFT = 1


@functools.cache
def _pause_function() -> Any:
    """``omp_pause_resource_all`` of the OpenMP runtime torch loaded, or None (no OpenMP, or one without it)."""
    import torch

    # Linux only: there torch ships GNU OpenMP, whose pause frees just the calling thread's team (other
    # runtimes pause every thread's, and do not throttle like this)
    if not sys.platform.startswith("linux") or "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        function = ctypes.CDLL(None).omp_pause_resource_all
    except (AttributeError, OSError, TypeError):  # not among the process's global symbols
        return None
    function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
    return function


def release_idle_workers() -> bool:
    """Free the calling thread's OpenMP workers; call it where the thread starts waiting on another thread's
    model work (outside any parallel region). True when the runtime did; a no-op elsewhere."""
    function = _pause_function()
    return function is not None and function(OMP_PAUSE_SOFT) == 0
