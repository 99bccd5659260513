"""The garbage collector's tuning while a run streams rows.

Streaming allocates and frees millions of short-lived rows, records and answers. With
CPython's default threshold, objects of the batches in flight keep surviving into the old
generations, whose full collections walk every object of every module; freed rows are
reclaimed by reference counting regardless, so collections can be rarer.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: Net new container objects before a young-generation collection while rows stream (CPython's
#: default is 700).
STREAMING_GC_THRESHOLD = 50_000


@contextmanager
def streaming_gc() -> Iterator[None]:
    """While rows stream: leave what exists (modules, config, plan) out of collections and
    collect young objects less often; restored afterwards (``segship schedule`` runs on)."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], STREAMING_GC_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
