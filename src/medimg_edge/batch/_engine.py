"""Scheduling: chunks of files to a local process pool, a Dask cluster or the caller's
own process; results streamed to a sink as they complete."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import InvalidInputError
from ._config import BatchConfig
from ._worker import Item, base_row, process_chunk, remote_chunk, to_batch

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["BatchDrift", "Summary", "check_scheduler", "dispatch", "local_cluster", "local_pool"]

_MAX_CHUNK = 64
_NAMED = ("local", "serial", "local-dask")


class Sink(Protocol):
    run: int

    def previous(self, config_id: str) -> dict[str, str]: ...

    def add(self, batch: pa.RecordBatch) -> None: ...

    def close(self, record: dict[str, Any] | None = None) -> None: ...


@dataclass(frozen=True)
class Summary:
    """What a batch run did.

    Attributes
    ----------
    total : int
        Input files.
    done : int
        Files processed without error in this run.
    skipped : int
        Files skipped: an earlier run has a successful row for the same content and
        config id.
    failed : int
        Files with an ``error_code`` in this run.
    failed_by_code : dict of str to int
    elapsed_s : float
    run : int
        The run number (part files ``part-r<run>-*.parquet``).
    scheduler : str
        ``"serial"``, ``"local"`` (process pool), ``"executor"`` (given), ``"dask"``.
    workers : int
    interrupted : bool
        True when the run was stopped (Ctrl-C) before the end.
    drift : dict or None
        With ``diagnosis``: per model the drift monitor's status after reading this run's
        results in the order they completed (:class:`BatchDrift`).
    """

    total: int
    done: int
    skipped: int
    failed: int
    failed_by_code: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    run: int = 1
    scheduler: str = "local"
    workers: int = 1
    interrupted: bool = False
    drift: dict[str, Any] | None = None

    @property
    def files_per_s(self) -> float:
        n = self.done + self.failed + self.skipped
        return n / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "failed_by_code": dict(self.failed_by_code),
            "elapsed_s": round(self.elapsed_s, 3),
            "files_per_s": round(self.files_per_s, 2),
            "run": self.run,
            "scheduler": self.scheduler,
            "workers": self.workers,
            "interrupted": self.interrupted,
            "drift": self.drift,
        }

    def format(self) -> str:
        """A few human-readable lines (no paths)."""
        lines = [
            f"{self.total} file(s): {self.done} done, {self.skipped} skipped (already done), "
            f"{self.failed} failed; {self.elapsed_s:.1f} s, {self.files_per_s:.1f} files/s "
            f"({self.scheduler}, {self.workers} worker(s), run {self.run})"
            + (" - INTERRUPTED" if self.interrupted else "")
        ]
        for code, n in sorted(self.failed_by_code.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  failed {code}: {n}")
        for key, st in (self.drift or {}).items():
            if not st.get("available", False):
                lines.append(f"  drift {key}: unavailable ({st.get('reason', '')})")
            else:
                alarms = ", ".join(st["alarms"]) or "none"
                lines.append(
                    f"  drift {key}: {st['status']} after {st['frames']} results "
                    f"(signals in alarm: {alarms}; alarms raised: {st['alarms_raised']})"
                )
        return "\n".join(lines)


class BatchDrift:
    """The drift monitor (:mod:`medimg_edge.monitor`) over the rows of a batch run: each
    successful diagnosis row joins its model's window as it arrives (rows carry quality
    measures, the positive score, the outcome and the frame size; no out-of-distribution
    distance, so those two signals are not monitored here). Alarms are logged
    (``medimg_edge.batch``, event ``drift_alarm``)."""

    _COLUMNS = ("error_code", "height", "width", "model_name", "model_version", "model_sha256")

    def __init__(self, config: BatchConfig) -> None:
        import logging

        from ..monitor import DriftMonitor

        self.monitor = DriftMonitor(logger=logging.getLogger("medimg_edge.batch"))
        self.search = [ref.ref for _, ref in config.models]
        self.seen: set[str] = set()

    def add(self, batch: pa.RecordBatch) -> None:
        """Feed the rows of one part."""
        from ..monitor import find_reference, model_key, signals_of_row

        names = set(batch.schema.names)
        if "model_name" not in names:
            return
        for row in batch.to_pylist():
            key = model_key(row.get("model_name"), row.get("model_version"))
            if key is None or row.get("error_code") is not None:
                continue
            if key not in self.seen:
                self.seen.add(key)
                model = {"name": row["model_name"], "sha256": row.get("model_sha256")}
                self.monitor.add_model(key, find_reference(model, self.search)[0])
            self.monitor.observe(key, *signals_of_row(row))

    def status(self) -> dict[str, Any] | None:
        """Per model: ``available``, ``status``, ``frames``, ``alarms``, ``alarms_raised``
        (None when no row named a model)."""
        if not self.seen:
            return None
        out: dict[str, Any] = {}
        for key, st in self.monitor.status()["models"].items():
            out[key] = {k: v for k, v in st.items() if k != "signals"}
        return out


def _chunks(items: Sequence[Item], size: int) -> list[list[Item]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _serial(config: BatchConfig, chunks: list[list[Item]]) -> Iterator[tuple[Any, ...]]:
    for c in chunks:
        yield c, process_chunk(config, c), None


def _executor(
    make: Any, config: BatchConfig, chunks: list[list[Item]], inflight: int
) -> Iterator[tuple[Any, ...]]:
    """Through a ``concurrent.futures`` executor with at most ``inflight`` chunks
    submitted.  ``make()`` returns (executor, owned); when an owned process pool breaks
    (a worker died: a decoder crashed or was killed) the chunks in flight are reported
    as failed (``worker_crashed``) and a new pool takes the remaining ones."""
    ex, owned = make()
    pending: dict[Future[Any], list[Item]] = {}
    it = iter(chunks)
    unsent: list[list[Item]] = []  # refused by a pool that had just broken
    try:
        while True:
            broken = False
            while len(pending) < inflight:
                c = unsent.pop() if unsent else next(it, None)
                if c is None:
                    break
                try:
                    pending[ex.submit(remote_chunk, config, c)] = c
                except BrokenProcessPool:
                    unsent.append(c)
                    broken = True
                    break
            if not broken:
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    c = pending.pop(f)
                    try:
                        result = f.result()
                    except BrokenProcessPool as exc:
                        broken = True
                        yield c, None, exc
                    except Exception as exc:  # the task itself failed (not one file)
                        yield c, None, exc
                    else:
                        yield c, result, None
            if broken:
                for c in list(pending.values()):
                    yield c, None, BrokenProcessPool("worker process died")
                pending.clear()
                if not owned:
                    raise BrokenProcessPool("the executor's worker process died")
                ex.shutdown(wait=False, cancel_futures=True)
                ex, owned = make()
    finally:
        if owned:
            ex.shutdown(wait=True, cancel_futures=True)


def _dask(
    client: Any, config: BatchConfig, chunks: list[list[Item]], inflight: int
) -> Iterator[tuple[Any, ...]]:
    import importlib

    as_completed: Any = importlib.import_module("distributed").as_completed
    it = iter(chunks)
    running: dict[Any, list[Item]] = {}
    ac = as_completed()

    def submit() -> None:
        c = next(it, None)
        if c is not None:
            f = client.submit(remote_chunk, config, c, pure=False)
            running[f] = c
            ac.add(f)

    for _ in range(inflight):
        submit()
    try:
        for f in ac:
            c = running.pop(f)
            try:
                result = f.result()
            except Exception as exc:  # KilledWorker, a task error
                yield c, None, exc
            else:
                yield c, result, None
            f.release()
            submit()
    finally:
        if running:  # stopped early (Ctrl-C): drop the queued tasks
            client.cancel(list(running))


def _failed_rows(config: BatchConfig, chunk: list[Item], exc: BaseException) -> pa.RecordBatch:
    code = "worker_crashed"
    if not isinstance(exc, BrokenProcessPool) and type(exc).__name__ != "KilledWorker":
        code = "task_failed"
    if code == "worker_crashed":
        message = (
            f"a worker process died during the task of {len(chunk)} file(s) "
            f"({type(exc).__name__}); run again to retry"
        )
    else:
        message = f"the task of {len(chunk)} file(s) failed ({type(exc).__name__})"
    rows = [{**base_row(config, it), "error_code": code, "error_message": message} for it in chunk]
    return to_batch(rows)


def local_pool(workers: int) -> ProcessPoolExecutor:
    """The process pool ``scheduler="local"`` uses: ``workers`` spawn-started processes
    (each sets itself up on its first task: :func:`~._worker.remote_chunk`).  Also used by
    the benchmarks, so that they time the very pool the engine uses."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _local_pool(workers: int) -> Any:
    def make() -> tuple[Executor, bool]:
        return local_pool(workers), True

    return make


def local_cluster(workers: int) -> tuple[Any, Any]:
    """A Dask ``LocalCluster`` as ``scheduler="local-dask"`` starts it, and its client.

    ``workers`` processes of one thread each; scheduler, workers and dashboard listen on
    127.0.0.1 only (the dashboard on a free port); logs below ERROR are silenced.  The
    caller closes both (client first).  Also used by the tests and benchmarks, so that
    they time and check the very cluster the engine uses.

    Parameters
    ----------
    workers : int
        Worker processes.

    Returns
    -------
    tuple
        ``(distributed.Client, distributed.LocalCluster)``.
    """
    import importlib
    import logging

    dask: Any = importlib.import_module("dask")
    distributed: Any = importlib.import_module("distributed")
    # Worker housekeeping that competes with the task thread for the GIL, off or slower
    # (the nannies pass this config to the workers): the statistical profiler (a stack
    # sample of the task thread every 10 ms), the GIL-contention monitor (every 1 ms when
    # gilknocker is installed) and the event-loop tick check (every 20 ms); the system and
    # memory monitors sample less often (0.5 s and 0.1 s by default).
    quiet = {
        "distributed.worker.profile.enabled": False,
        "distributed.admin.system-monitor.gil.enabled": False,
        "distributed.admin.tick.interval": "500ms",
        "distributed.admin.system-monitor.interval": "2s",
        "distributed.worker.memory.monitor-interval": "1s",
    }
    with dask.config.set(quiet):
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # HTTP endpoint on a free loopback port
            silence_logs=logging.ERROR,
        )
    return distributed.Client(cluster), cluster


def _dask_client(scheduler: Any, workers: int) -> tuple[Any, list[Any], int]:
    """(client, what to close at the end, worker threads)."""
    import importlib

    try:
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        raise InvalidInputError(
            "the Dask scheduler needs dask[distributed]: pip install 'medimg-edge[batch]'"
        ) from None
    owned: list[Any] = []
    if isinstance(scheduler, distributed.Client):
        client = scheduler
    elif scheduler == "local-dask":
        client, cluster = local_cluster(workers)
        owned = [client, cluster]
    else:
        try:
            client = distributed.Client(str(scheduler), timeout="30s")
        except OSError as exc:
            raise InvalidInputError(
                f"cannot connect to the Dask scheduler {scheduler} ({type(exc).__name__}): "
                "is `dask scheduler` running and reachable?",
                code="no_scheduler",
            ) from None
        owned = [client]
    threads = sum(int(w.get("nthreads", 1)) for w in client.scheduler_info()["workers"].values())
    return client, owned, max(1, threads)


def check_scheduler(scheduler: Any) -> None:
    """Raise :class:`InvalidInputError` for a scheduler string that names nothing."""
    if isinstance(scheduler, str) and scheduler not in _NAMED and "://" not in scheduler:
        raise InvalidInputError(
            f"scheduler must be 'local', 'serial', 'local-dask' or a Dask address such "
            f"as tcp://host:8786, got {scheduler!r}"
        )


def dispatch(
    config: BatchConfig,
    items: Sequence[Item],
    sink: Sink,
    *,
    scheduler: Any,
    workers: int | None,
    chunk_size: int | None,
    progress: bool,
) -> Summary:
    """Run ``items`` through the chosen engine into ``sink`` and summarise."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    n_workers = max(1, int(workers) if workers else (os.cpu_count() or 1))
    client: Any = None
    owned: list[Any] = []
    kind: str
    if scheduler is None or scheduler == "local":
        kind = "local"
    elif scheduler == "serial":
        kind, n_workers = "serial", 1
    elif isinstance(scheduler, Executor):
        kind = "executor"
        n_workers = int(getattr(scheduler, "_max_workers", n_workers) or n_workers)
    else:  # a Dask address or Client (the caller ran check_scheduler)
        kind = "dask"
        client, owned, n_workers = _dask_client(scheduler, n_workers)
    size = chunk_size or max(1, min(_MAX_CHUNK, math.ceil(len(items) / (4 * n_workers))))
    chunks = _chunks(items, int(size))
    inflight = 2 * n_workers
    if kind == "serial":
        stream = _serial(config, chunks)
    elif kind == "local":
        stream = _executor(_local_pool(n_workers), config, chunks, inflight)
    elif kind == "executor":
        stream = _executor(lambda: (scheduler, False), config, chunks, inflight)
    else:
        stream = _dask(client, config, chunks, inflight)

    done = skipped = failed = 0
    drift = BatchDrift(config) if "diagnosis" in config.what else None
    codes: Counter[str] = Counter()
    interrupted = False
    bar = tqdm(
        total=len(items), unit="file", disable=not progress, smoothing=0.05, dynamic_ncols=True
    )
    try:
        for chunk, result, exc in stream:
            if exc is not None:
                batch = _failed_rows(config, chunk, exc)
                skip = 0
            else:
                batch, skip = result
            sink.add(batch)
            if drift is not None:
                drift.add(batch)
            errs = batch.column("error_code").to_pylist()
            bad = [e for e in errs if e is not None]
            codes.update(bad)
            failed += len(bad)
            done += len(errs) - len(bad)
            skipped += skip
            bar.update(len(chunk))
            bar.set_postfix(failed=failed, skipped=skipped, refresh=False)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        bar.close()
        if hasattr(stream, "close"):
            stream.close()
        summary = Summary(
            total=len(items),
            done=done,
            skipped=skipped,
            failed=failed,
            failed_by_code=dict(codes),
            elapsed_s=time.perf_counter() - t0,
            run=config.run,
            scheduler=kind,
            workers=n_workers,
            interrupted=interrupted,
            drift=None if drift is None else drift.status(),
        )
        sink.close({**summary.to_dict(), "config_id": config.config_id})
        for thing in owned:
            thing.close()
    return summary
