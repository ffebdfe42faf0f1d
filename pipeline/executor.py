"""Run per-item work (decode, hash, re-encode) serially or in a process pool, in input order.

The seam where a cluster executor plugs in later: stages call :func:`map_ordered` and never
see processes. Results come back in input order whatever the worker count, which is what makes
outputs independent of parallelism.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def resolve_workers(workers: int | None) -> int:
    """``None``/0 mean one per core; never more processes than cores."""
    cores = os.cpu_count() or 1
    if not workers:
        return cores
    return max(1, min(int(workers), cores))


def progress(iterable: Iterable[T], total: int | None, desc: str, unit: str = "it") -> Iterable[T]:
    """tqdm with a rate and ETA on a terminal; periodic one-line updates otherwise (logs, CI)."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=interactive,
                mininterval=0.5 if interactive else 30.0,
                disable=os.environ.get("TQDM_DISABLE") == "1" or (None if interactive else False))


def map_ordered(fn: Callable[[T], R], items: Sequence[T], workers: int | None = 1, desc: str = "work",
                unit: str = "it", chunksize: int | None = None) -> list[R]:
    """Apply ``fn`` to every item and return results in input order, with a progress bar."""
    n = len(items)
    workers = resolve_workers(workers)
    if workers <= 1 or n < 2 * workers:
        return list(progress((fn(x) for x in items), n, desc, unit))
    chunksize = chunksize or max(1, min(256, n // (workers * 8) or 1))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(progress(pool.map(fn, items, chunksize=chunksize), n, desc, unit))


def imap_ordered(fn: Callable[[T], R], items: Iterable[T], workers: int | None = 1, desc: str = "work",
                 unit: str = "it", total: int | None = None) -> Iterator[R]:
    """Like :func:`map_ordered`, but streaming: items are pulled lazily and results yielded in
    input order as they complete, with at most two items per worker in flight, so a million
    captions pass through in bounded memory."""
    workers = resolve_workers(workers)
    bar = progress(iter(()), total, desc, unit)
    try:
        if workers <= 1:
            for item in items:
                yield fn(item)
                bar.update(1)
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending: deque = deque()
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
                    bar.update(1)
            while pending:
                yield pending.popleft().result()
                bar.update(1)
    finally:
        bar.close()
