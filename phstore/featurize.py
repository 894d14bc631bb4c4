"""Compute a descriptor for every pending snapshot of a store on Dask workers.

One task per shard of the descriptor group (:meth:`FeatureStore.shard_size`): the task reads
its rows' positions from the store, computes the pending ones, writes the values of the whole
shard region (one file per array) and its records, and returns the rows' status and error
messages. Shards never overlap, so tasks' writes never race. The coordinating process commits
the status (the commit marker, chunked by ``TABLE_ROWS``) as results arrive, once per batch of
them, and submits the tasks in batches, a bounded number in flight. A shard whose task died,
or whose result never reached a commit, is still pending and is computed again on the next
run, giving the same values. A task lost with its workers (Dask's ``KilledWorker``: workers
retiring at their lifetime or killed while running it) is submitted again, at most
:data:`RESUBMITS` times, before it is reported.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from distributed import Client, KilledWorker, as_completed
from tqdm.auto import tqdm

from phstore.descriptors.base import Descriptor
from phstore.store import DONE, FAILED, FRAMES, PENDING, FeatureStore


@dataclass
class ShardReport:
    """What one task did: rows computed, rows that failed (with reasons), seconds spent in the
    whole task and in the descriptor alone (the rest is store reads and writes), and the CPU
    seconds of the task's thread in the descriptor (below ``compute_seconds`` when the thread
    waited: for the CPU, the GIL, or a descriptor's child process such as PH's)."""

    collection: str
    shard: int
    computed: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0
    compute_seconds: float = 0.0
    compute_cpu_seconds: float = 0.0
    status: np.ndarray | None = None  # of the shard's rows, for the coordinator to commit (None: nothing done)
    errors: np.ndarray | None = None


@dataclass
class FeaturizeReport:
    """Summary of a featurize run."""

    group: str
    shards: list[ShardReport] = field(default_factory=list)
    skipped_shards: int = 0
    errors: list[str] = field(default_factory=list)  # tasks that raised (their shards stay pending)
    notes: list[str] = field(default_factory=list)  # what users must know, e.g. species treated alike

    @property
    def computed(self) -> int:
        return sum(c.computed for c in self.shards)

    @property
    def failures(self) -> list[tuple[str, int, str]]:
        return [(c.collection, row, reason) for c in self.shards for row, reason in c.failed]

    def failed_frames(self, store: FeatureStore) -> list[tuple[str, int, str, str, int]]:
        """:attr:`failures` with the source file and frame index of each: ``(collection,
        snapshot, reason, source, index)``."""
        out = []
        for coll in sorted({c for c, _, _ in self.failures}):
            f = store.read_rows(coll, FRAMES, slice(0, store.n_snapshots(coll)), ["source", "source_index"])
            out += [
                (coll, row, reason, str(f["source"][row]), int(f["source_index"][row]))
                for c, row, reason in self.failures
                if c == coll
            ]
        return out

    @property
    def task_seconds(self) -> float:
        """Seconds of all tasks together (worker time, store I/O included)."""
        return sum(c.seconds for c in self.shards)

    @property
    def compute_seconds(self) -> float:
        """Seconds spent in the descriptor itself, all tasks together."""
        return sum(c.compute_seconds for c in self.shards)

    @property
    def compute_cpu_seconds(self) -> float:
        """CPU seconds of the tasks' threads in the descriptor, all tasks together."""
        return sum(c.compute_cpu_seconds for c in self.shards)


def featurize_shard(
    store_path: str,
    collection: str,
    descriptor: Descriptor,
    shard: int,
    retry_failed: bool = False,
    writer: str | None = None,
) -> ShardReport:
    """Compute the pending rows of one shard and write the shard's values (runs on a Dask
    worker, on behalf of the holder of the store's writer lock, whose token is ``writer``); the
    rows' status and error messages come back in the report, for the holder to commit.

    Rows are read and written with plain Zarr calls (:meth:`FeatureStore.read_rows`): no Dask
    graph inside a task, so nothing is sent back through the distributed scheduler.
    """
    start = time.perf_counter()
    store = FeatureStore(store_path, mode="r+", writer=writer)
    group = descriptor.group
    rows = store.shard_rows(collection, group, shard)
    specs = descriptor.variables(int(store.collection_attrs(collection)["natoms"]))
    current = store.read_rows(collection, group, rows, ["status"])
    todo = current["status"] == PENDING
    if retry_failed:
        todo |= current["status"] == FAILED
    report = ShardReport(collection, shard)
    if not todo.any():
        return report
    idx = np.flatnonzero(todo)
    if todo.all():  # the usual case: nothing in the shard to keep, so nothing to read
        n = rows.stop - rows.start
        current["error"] = np.full(n, "", dtype=object)
        current.update({k: np.full((n, *v.shape), v.fill, dtype=v.dtype) for k, v in specs.items()})
    else:
        current.update(store.read_rows(collection, group, rows, ["error", *specs]))
    inputs = descriptor.inputs(store, collection, rows)
    compute_start, cpu_start = time.perf_counter(), time.thread_time()
    results = descriptor.compute_batch([inputs[i] for i in idx])
    report.compute_seconds = time.perf_counter() - compute_start
    report.compute_cpu_seconds = time.thread_time() - cpu_start
    new_records = []
    for i, res in zip(idx, results):
        if res.error is not None:
            current["status"][i] = FAILED
            current["error"][i] = res.error
            report.failed.append((rows.start + int(i), res.error))
            continue
        for name, value in res.values.items():
            current[name][i] = value
        current["status"][i] = DONE
        current["error"][i] = ""
        report.computed += 1
        if res.records is not None:
            new_records.append(np.column_stack([np.full(len(res.records), float(i)), res.records]))
    if descriptor.record_columns:
        old, _ = (np.empty((0, 0)), None) if todo.all() else store.records(collection, group, shard)
        keep = old[~np.isin(old[:, 0], idx)] if old.size else np.empty((0, len(descriptor.record_columns)))
        records = np.concatenate([keep, *new_records])
        if len(keep):  # each frame's records come sorted: ordering the rows keeps the whole shard sorted
            records = records[np.argsort(records[:, 0], kind="stable")]
        store.write_records(collection, group, shard, records, {"columns": list(descriptor.record_columns)})
    report.status, report.errors = current.pop("status"), current.pop("error")
    store.write_rows(collection, group, rows, current)
    report.seconds = time.perf_counter() - start
    return report


def pending_shards(store: FeatureStore, collection: str, group: str, retry_failed: bool = False) -> list[int]:
    """Shards of a descriptor group of ``collection`` that hold at least one row still to compute."""
    status = store.status(collection, group)
    todo = (status == PENDING) | (retry_failed & (status == FAILED))
    return np.unique(store.shard_of(collection, group, np.flatnonzero(todo))).tolist()


#: Tasks a featurize run keeps submitted per worker thread (the rest wait in this process).
IN_FLIGHT_PER_THREAD = 4

#: Times a shard whose task was lost with its workers is submitted again (shards are idempotent).
RESUBMITS = 2


class _Commits:
    """The status of finished shards, buffered until :meth:`flush` commits them (one write of
    each status file they touch)."""

    def __init__(self, store: FeatureStore, group: str) -> None:
        self.store, self.group, self.reports = store, group, []

    def add(self, report: ShardReport) -> None:
        if report.status is not None:
            self.reports.append(report)

    def flush(self) -> None:
        by_collection: dict[str, list[ShardReport]] = {}
        for r in self.reports:
            by_collection.setdefault(r.collection, []).append(r)
        for coll, reports in by_collection.items():
            rows = [self.store.shard_rows(coll, self.group, r.shard) for r in reports]
            self.store.commit_status(
                coll,
                self.group,
                np.concatenate([np.arange(s.start, s.stop) for s in rows]),
                np.concatenate([r.status for r in reports]),
                np.concatenate([r.errors for r in reports]),
            )
        self.reports = []


def featurize(
    store_path: str | Path,
    descriptor: Descriptor,
    client: Client,
    collections: Iterable[str] | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> FeaturizeReport:
    """Compute ``descriptor`` for every pending snapshot of the store on ``client``'s workers.

    Finished rows are skipped, so an interrupted run resumes where it stopped; failed rows are
    kept failed unless ``retry_failed``. The store's writer lock is held throughout, so a second
    run on the same store raises :class:`~phstore.store.StoreLocked` instead of racing this one.
    A descriptor made from other stored results (the PH vectors) raises ValueError, saying what
    to run first, while those are missing. Tasks are submitted in batches, at most
    :data:`IN_FLIGHT_PER_THREAD` per worker thread at a time; the status of finished shards is
    committed after each batch of results (and when the run is interrupted).
    """
    store = FeatureStore(store_path, mode="r+")
    chosen = list(collections) if collections else store.collections
    group = descriptor.group
    with store.writer(f"featurize {group}"):
        todo: list[tuple[str, int]] = []
        total, notes = 0, []
        for coll in chosen:
            descriptor.check_inputs(store, coll)
            if store.n_snapshots(coll):
                note = descriptor.species_note(store.read_rows(coll, FRAMES, slice(0, 1), ["numbers"])["numbers"][0])
                notes += [f"{coll}: {note}"] if note else []
            store.ensure_descriptor(
                coll,
                group,
                descriptor.provenance(),
                descriptor.variables(int(store.collection_attrs(coll)["natoms"])),
                descriptor.coordinates(),
            )
            todo += [(coll, s) for s in pending_shards(store, coll, group, retry_failed)]
            total += store.n_shards(coll, group)
        report = FeaturizeReport(group, skipped_shards=total - len(todo), notes=notes)

        def window() -> int:  # asked afresh: batch jobs and adaptive scaling bring workers as it runs
            return IN_FLIGHT_PER_THREAD * max(1, sum(client.nthreads().values()))

        queue, futures, running, lost = deque(todo), {}, as_completed(), Counter()

        def submit(k: int) -> None:
            batch = [queue.popleft() for _ in range(min(k, len(queue)))]
            if batch:
                colls, shards = zip(*batch)
                n = len(batch)
                submitted = client.map(
                    featurize_shard, [str(store.path)] * n, colls, [descriptor] * n, shards,
                    [retry_failed] * n, [store.writer_token] * n, pure=False,
                )  # fmt: skip
                futures.update(zip(submitted, batch))
                running.update(submitted)

        commits = _Commits(store, group)
        submit(window())
        try:
            with tqdm(total=len(todo), desc=f"featurize {group}", unit="shard", disable=not progress) as bar:
                for finished in running.batches():
                    again = 0
                    for future in finished:
                        key = futures.pop(future)
                        try:
                            shard = future.result()
                            report.shards.append(shard)
                            commits.add(shard)
                        except KilledWorker as exc:
                            if lost[key] < RESUBMITS:  # its workers died under it: try again
                                lost[key] += 1
                                queue.appendleft(key)
                                again += 1
                            else:
                                report.errors.append(f"{key[0]} shard {key[1]}: KilledWorker: {exc}")
                        except Exception as exc:  # a bug: report it, finish the other shards
                            report.errors.append(f"{key[0]} shard {key[1]}: {type(exc).__name__}: {exc}")
                        future.release()  # its result lives here now, not on a (perhaps retiring) worker
                    commits.flush()
                    bar.update(len(finished) - again)
                    bar.set_postfix(failed=len(report.failures))
                    if len(futures) <= (limit := window()) // 2:
                        submit(limit - len(futures))
        finally:  # ^C: what has finished is kept
            commits.flush()
            client.cancel(list(futures))
    return report
