"""Run per-item work (decode, hash, re-encode) serially, in a process pool or on a Dask cluster.

Stages ask :func:`make_executor` for the executor ``params.yaml: executor`` selects and call
its ``map``; they never see processes or clusters. Results come back in input order whatever
the executor and worker count, which is what makes outputs independent of parallelism.
:func:`map_ordered` (the process pool) and :func:`imap_ordered` (streaming, for annotate) stay
the plain building blocks.
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


# --------------------------------------------------------------------------------------------
# Executors: where the per-image work of ingest, dedup and shard runs (params.yaml: executor).
# --------------------------------------------------------------------------------------------

EXECUTOR_KINDS = ("serial", "local", "dask")
_CONNECT_TIMEOUT_S = 10.0


def _run_chunk(fn: Callable[[T], R], chunk: list[T]) -> list[R]:
    """One cluster task: ``fn`` over a chunk of items (a top-level function so it pickles).

    Items are sent in chunks because a Dask task costs about a millisecond of scheduler time,
    which is as much as hashing one small image."""
    return [fn(x) for x in chunk]


def _unreadable(paths: list[str]) -> tuple[str, list[str]]:
    """Run on each cluster worker: its working directory and the given paths it cannot read."""
    bad = [p for p in paths if not (os.path.exists(p) and os.access(p, os.R_OK))]
    return os.getcwd(), bad


class Executor:
    """Maps a picklable function over items and returns the results in input order.

    Stages talk only to this interface, so moving from one core to a process pool to a Dask
    cluster changes ``params.yaml: executor`` and nothing else; because results come back in
    input order and every function is pure, the tables and shards are byte-identical whichever
    executor (and how many workers) computed them.
    """

    kind = "base"

    def start(self) -> Executor:
        """Acquire workers (a no-op except for Dask, whose start-up is worth timing on its own)."""
        return self

    def close(self) -> None:
        """Release workers."""

    def __enter__(self) -> Executor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(self, fn: Callable[[T], R], items: Sequence[T], desc: str = "work", unit: str = "it",
            chunksize: int | None = None, inputs: Iterable[str] = ()) -> list[R]:
        """``[fn(x) for x in items]``; ``inputs`` are paths every worker must be able to read."""
        raise NotImplementedError

    def imap(self, fn: Callable[[T], R], items: Iterable[T], desc: str = "work", unit: str = "it",
             total: int | None = None) -> Iterator[R]:
        """``fn`` over a stream of items, yielded in input order as they complete.

        Items are pulled lazily with a few per worker in flight, so a stream of a million
        samples (shard ranges, caption batches) passes through in bounded memory."""
        raise NotImplementedError

    def check_inputs(self, inputs: Iterable[str]) -> None:
        """Fail with one line if a worker cannot read one of these paths (files or folders).

        A no-op on this machine, where the stage itself just read them; a cluster's workers may
        not see the same filesystem, and would otherwise turn every image into a reject."""

    def describe(self) -> str:
        return self.kind


class SerialExecutor(Executor):
    """Everything in this process: for tests, debugging and profiling (tracebacks stay local)."""

    kind = "serial"

    def map(self, fn: Callable[[T], R], items: Sequence[T], desc: str = "work", unit: str = "it",
            chunksize: int | None = None, inputs: Iterable[str] = ()) -> list[R]:
        return list(progress((fn(x) for x in items), len(items), desc, unit))

    def imap(self, fn: Callable[[T], R], items: Iterable[T], desc: str = "work", unit: str = "it",
             total: int | None = None) -> Iterator[R]:
        return imap_ordered(fn, items, 1, desc, unit, total)


class LocalExecutor(Executor):
    """A process pool on this machine (the default), ``workers`` processes.

    One pool serves every ``map``/``imap`` call of the stage, started with the executor:
    starting one per call forks the parent again each time, and a parent holding a large
    corpus makes each fork cost (page tables) what a tar's work costs. Forked at start, the
    workers also never inherit a DuckDB engine's threads the stage opens afterwards.
    """

    kind = "local"

    def __init__(self, workers: int | None) -> None:
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None

    def start(self) -> LocalExecutor:
        if self.pool is None and resolve_workers(self.workers) > 1:
            self.pool = ProcessPoolExecutor(max_workers=resolve_workers(self.workers))
            # Fork the workers now (a pool forks on its first task), while the parent is small.
            for fut in [self.pool.submit(os.getpid) for _ in range(resolve_workers(self.workers))]:
                fut.result()
        return self

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def map(self, fn: Callable[[T], R], items: Sequence[T], desc: str = "work", unit: str = "it",
            chunksize: int | None = None, inputs: Iterable[str] = ()) -> list[R]:
        workers = resolve_workers(self.workers)
        n = len(items)
        if self.pool is None or n < 2 * workers:
            return map_ordered(fn, items, self.workers, desc, unit, chunksize)
        chunksize = chunksize or max(1, min(256, n // (workers * 8) or 1))
        return list(progress(self.pool.map(fn, items, chunksize=chunksize), n, desc, unit))

    def imap(self, fn: Callable[[T], R], items: Iterable[T], desc: str = "work", unit: str = "it",
             total: int | None = None) -> Iterator[R]:
        if self.pool is None:
            yield from imap_ordered(fn, items, 1, desc, unit, total)
            return
        window = 2 * resolve_workers(self.workers)
        bar = progress(iter(()), total, desc, unit)
        pending: deque = deque()
        try:
            for item in items:
                pending.append(self.pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
                    bar.update(1)
            while pending:
                yield pending.popleft().result()
                bar.update(1)
        finally:
            for fut in pending:
                fut.cancel()
            bar.close()

    def describe(self) -> str:
        return f"local ({resolve_workers(self.workers)} processes)"


class DaskExecutor(Executor):
    """Tasks on a Dask cluster: ``address`` is a scheduler (``tcp://host:8786``) or ``local``.

    ``local`` starts a LocalCluster of ``workers`` single-threaded worker processes bound to
    127.0.0.1 with no dashboard (one per core when 0). A killed worker's tasks are re-run by the
    scheduler on the others, and since each task is a pure function of its inputs the outputs
    do not change. Paths inside the items are opened by the workers: they must name the same
    files on every worker (shared storage, same mount point, same working directory for
    relative paths); :meth:`map` checks the ``inputs`` it is given on every worker first.
    """

    kind = "dask"

    def __init__(self, address: str, workers: int | None = 0,
                 connect_timeout: float = _CONNECT_TIMEOUT_S) -> None:
        self.address = address
        self.workers = workers
        self.connect_timeout = connect_timeout
        self.client = None
        self.cluster = None

    def start(self) -> DaskExecutor:
        if self.client is not None:
            return self
        import logging

        from distributed import Client, LocalCluster

        from pipeline.errors import PipelineError

        if self.address == "local":
            # No dashboard; the scheduler's HTTP endpoint (health, metrics) on a free port of
            # 127.0.0.1 rather than :8787 on every interface.
            self.cluster = LocalCluster(n_workers=resolve_workers(self.workers), threads_per_worker=1,
                                        processes=True, host="127.0.0.1", dashboard_address=None,
                                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                        silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
            return self
        try:
            self.client = Client(self.address, timeout=self.connect_timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise PipelineError(f"executor.scheduler_address {self.address!r}: cannot reach a Dask scheduler "
                                f"within {self.connect_timeout:.0f}s ({reason[:160]}); start one with "
                                "`dask scheduler` or set executor.kind: local") from None
        try:
            self.client.wait_for_workers(1, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise PipelineError(f"executor.scheduler_address {self.address!r}: the scheduler has no workers "
                                f"after {self.connect_timeout:.0f}s; start some with `dask worker "
                                f"{self.address}`") from exc
        return self

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def n_workers(self) -> int:
        self.start()
        assert self.client is not None
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def describe(self) -> str:
        where = "LocalCluster" if self.address == "local" else self.address
        return f"dask ({where}, {self.n_workers()} workers)"

    def check_inputs(self, inputs: Iterable[str]) -> None:
        """Fail with one line when a worker cannot read an input path (storage not shared)."""
        from pipeline.errors import PipelineError

        paths = sorted({str(p) for p in inputs})
        if not paths:
            return
        assert self.client is not None
        for worker, (cwd, bad) in sorted(self.client.run(_unreadable, paths).items()):
            if bad:
                more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
                raise PipelineError(f"dask worker {worker} cannot read {bad[0]!r}{more} (its working directory "
                                    f"is {cwd}): inputs must be on storage every worker sees at the same "
                                    "path; see README 'Running on a cluster'")

    def imap(self, fn: Callable[[T], R], items: Iterable[T], desc: str = "work", unit: str = "it",
             total: int | None = None) -> Iterator[R]:
        """One task per item (an item is already a batch: a shard range, a caption batch), a
        few per worker in flight, each released once read."""
        self.start()
        assert self.client is not None
        window = 2 * max(1, self.n_workers())
        bar = progress(iter(()), total, desc, unit)
        pending: deque = deque()
        try:
            for item in items:
                pending.append(self.client.submit(fn, item, pure=False))
                if len(pending) >= window:
                    fut = pending.popleft()
                    yield fut.result()
                    fut.release()
                    bar.update(1)
            while pending:
                fut = pending.popleft()
                yield fut.result()
                fut.release()
                bar.update(1)
        finally:
            for fut in pending:
                fut.release()
            bar.close()

    def map(self, fn: Callable[[T], R], items: Sequence[T], desc: str = "work", unit: str = "it",
            chunksize: int | None = None, inputs: Iterable[str] = ()) -> list[R]:
        self.start()
        assert self.client is not None
        self.check_inputs(inputs)
        n = len(items)
        if not n:
            return []
        workers = max(1, self.n_workers())
        chunksize = chunksize or max(1, min(64, n // (workers * 8) or 1))
        chunks = [list(items[i:i + chunksize]) for i in range(0, n, chunksize)]
        futures = self.client.map(_run_chunk, [fn] * len(chunks), chunks, pure=False)
        out: list[R] = []
        bar = progress(iter(()), n, desc, unit)
        step = 2 * workers
        try:
            # Gathered in input order, a few chunks per round trip, each future released once
            # read: results do not pile up on the workers, and a worker lost mid-run only costs
            # the chunks it had not handed back (the scheduler re-runs them elsewhere).
            for i in range(0, len(futures), step):
                batch = futures[i:i + step]
                for part in self.client.gather(batch):
                    out.extend(part)
                    bar.update(len(part))
                for fut in batch:
                    fut.release()
        finally:
            bar.close()
            for fut in futures:
                fut.release()
        return out


def executor_config(params: dict) -> dict:
    """The ``executor`` section, checked; a params file without it gets the local process pool."""
    from pipeline.errors import ConfigError

    cfg = {"kind": "local", "workers": 0, "scheduler_address": "local", "connect_timeout": _CONNECT_TIMEOUT_S}
    sec = params.get("executor", {})
    if sec is None:
        sec = {}
    if not isinstance(sec, dict):
        raise ConfigError(f"params.yaml: executor must be a mapping with keys {sorted(cfg)}")
    unknown = sorted(set(sec) - set(cfg))
    if unknown:
        raise ConfigError(f"params.yaml: unknown key executor.{unknown[0]}; valid keys: {sorted(cfg)}")
    cfg.update(sec)
    if cfg["kind"] not in EXECUTOR_KINDS:
        raise ConfigError(f"params.yaml: executor.kind {cfg['kind']!r} is not one of {list(EXECUTOR_KINDS)}")
    if cfg["workers"] is None:
        cfg["workers"] = 0
    if isinstance(cfg["workers"], bool) or not isinstance(cfg["workers"], int) or cfg["workers"] < 0:
        raise ConfigError(f"params.yaml: executor.workers must be an integer >= 0 (0: one per core), "
                          f"got {cfg['workers']!r}")
    timeout = cfg["connect_timeout"]
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"params.yaml: executor.connect_timeout must be a number of seconds > 0, got {timeout!r}")
    address = cfg["scheduler_address"]
    if not isinstance(address, str) or not address or (
            address != "local" and "://" not in address and ":" not in address):
        raise ConfigError(f"params.yaml: executor.scheduler_address must be 'local' or a scheduler address "
                          f"like tcp://10.0.0.5:8786, got {address!r}")
    return cfg


def make_executor(params: dict, stage_workers: int | None = None) -> Executor:
    """The executor ``params.yaml: executor`` selects, not yet started (use it as a context manager).

    ``local`` keeps each stage's own ``workers`` key (``ingest.workers``, ``dedup.workers``)
    when ``executor.workers`` is 0, so params files written before the executor section existed
    run exactly as before; ``executor.workers`` > 0 sizes the pool (or LocalCluster) for all.
    """
    cfg = executor_config(params)
    workers = cfg["workers"] or stage_workers
    if cfg["kind"] == "serial":
        return SerialExecutor()
    if cfg["kind"] == "local":
        return LocalExecutor(workers)
    return DaskExecutor(cfg["scheduler_address"], workers, float(cfg["connect_timeout"]))
