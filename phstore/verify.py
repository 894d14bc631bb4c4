"""``phstore verify``: read a whole store back and prove its invariants (ARCHITECTURE.md).

The store is read in blocks of snapshots (:func:`check_block`), as tasks on Dask workers when a
client is given, each chunk once. Checked:

* **frames table**: every chunk decodes; positions and cells are finite, atomic numbers
  positive, the density finite and positive, the source and trajectory named, the codes of the
  string keys there and naming the strings stored; the energy and
  the energy per atom agree (both NaN for an unlabelled snapshot, never infinite); the content
  hash matches the numbers, positions, cell and energy it was made from, and is unique.
* **each descriptor group**: its provenance record hashes to the key in its name; every status
  chunk decodes and holds pending, done or failed; done rows hold finite values and no error
  message, failed rows one; ragged records exist for every done row and never for a failed
  one (a pending row's are what a task killed before its commit left), their data is all
  there (a lost data chunk reads back as zeros, so it is looked for), and they hold no NaN.

What is found is :class:`Damage`: the rows it touches and what is wrong, frames damage named
with the source file and frame each row came from. Pending rows are unfinished work, not
damage: a note. :mod:`phstore.repair` mends what can be mended.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import zarr
from distributed import Client, as_completed
from tqdm.auto import tqdm

from phstore.provenance import record_key
from phstore.store import (
    CODED,
    DONE,
    FAILED,
    FRAMES,
    PENDING,
    RECORDS,
    SNAPSHOT,
    TABLE_ROWS,
    TARGET,
    FeatureStore,
    as_objects,
    code_name,
    content_hash,
    records_name,
)

#: Analyses, whose groups may cover a subset of the snapshots; every other group (a descriptor,
#: predictions) ends each snapshot done or failed.
PARTIAL = ("map", "inverse")


@dataclass
class Damage:
    """Rows (ascending snapshot indices) of one group of a collection, and what is wrong with them."""

    collection: str
    group: str
    rows: list[int]
    what: str
    whole_group: bool = False  # the group itself is in question (its provenance): no row can mend it

    def describe(self, sources: dict[int, tuple[str, int]] | None = None) -> str:
        """One line: where, what, and which rows (with their source file and frame when known)."""
        shown = [
            f"{r} ({sources[r][0]} frame {sources[r][1]})" if sources and r in sources else str(r)
            for r in self.rows[:5]
        ]
        more = f" and {len(self.rows) - 5} more" if len(self.rows) > 5 else ""
        return f"{self.collection}/{self.group}: {self.what}: snapshots {', '.join(shown)}{more}"


@dataclass
class Block:
    """What one task found in rows ``lo:hi`` of one group."""

    damage: list[Damage] = field(default_factory=list)
    pending: int = 0
    chunks: int = 0
    hashes: tuple[int, np.ndarray] | None = None  # frames: (first row, stored hashes; None unreadable) for uniqueness


@dataclass
class VerifyReport:
    """What verify found: damage (:attr:`problems`, one line each) and unfinished work (``notes``)."""

    damage: list[Damage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    groups: int = 0
    snapshots: int = 0
    chunks: int = 0

    @property
    def ok(self) -> bool:
        """No damage (pending work may remain: see ``notes``)."""
        return not self.damage

    @property
    def problems(self) -> list[str]:
        """Each damage as one line."""
        out = []
        for d in self.damage:
            sources = {r: s for (c, r), s in self.sources.items() if c == d.collection} if d.group == FRAMES else None
            out.append(d.describe(sources))
        return out


def _pieces(lo: int, hi: int, step: int) -> Iterator[tuple[int, int]]:
    """``lo:hi`` cut at the chunk boundaries (multiples of ``step``)."""
    while lo < hi:
        stop = min(hi, (lo // step + 1) * step)
        yield lo, stop
        lo = stop


class _Rows:
    """Reads rows ``lo:hi`` of arrays, chunk by chunk where a chunk does not decode: the rows of
    an unreadable chunk read as the fill value and are reported."""

    def __init__(self, collection: str, group: str, lo: int, hi: int, block: Block) -> None:
        self.collection, self.group, self.lo, self.hi, self.block = collection, group, lo, hi, block

    def read(self, name: str, arr: zarr.Array, pad: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(values, readable)``: the rows' values and which of them decoded. Rows past the end
        of a shorter array are left out, or with ``pad`` (the frames table, where every array
        holds every committed row) reported and read as the fill value."""
        lo, hi = self.lo, min(self.hi, arr.shape[0])
        step = arr.chunks[0]
        self.block.chunks += len(range(lo // step, -(-hi // step)))
        readable = np.ones(max(0, hi - lo), dtype=bool)
        try:
            values = arr[lo:hi]
        except Exception:  # find the chunks that do not decode
            parts = []
            for start, stop in _pieces(lo, hi, step):
                part = self.piece(name, arr, start, stop)
                readable[start - lo : stop - lo] = part is not None
                parts.append(self.fill(arr, stop - start) if part is None else part)
            values = np.concatenate(parts)
        if pad and hi < self.hi:  # an array shorter than the committed rows
            self.damaged(
                range(max(lo, hi), self.hi), f"{name}: {arr.shape[0]} rows, fewer than the committed snapshots"
            )
            values = np.concatenate([values, self.fill(arr, self.hi - max(lo, hi))])
            readable = np.concatenate([readable, np.zeros(self.hi - max(lo, hi), dtype=bool)])
        return as_objects(values), readable

    def finite(self, name: str, arr: zarr.Array) -> tuple[np.ndarray, np.ndarray]:
        """``(finite, readable)`` per row of a float array, read one chunk at a time (a block of
        per-atom rows, e.g. SOAP of 512 atoms, would not fit in memory at once)."""
        lo, hi = self.lo, min(self.hi, arr.shape[0])
        step = arr.chunks[0]
        finite, readable = np.ones(max(0, hi - lo), dtype=bool), np.ones(max(0, hi - lo), dtype=bool)
        for start, stop in _pieces(lo, hi, step):
            self.block.chunks += 1
            values = self.piece(name, arr, start, stop)
            readable[start - lo : stop - lo] = values is not None
            if values is not None:
                finite[start - lo : stop - lo] = np.isfinite(values).reshape(stop - start, -1).all(axis=1)
        return finite, readable

    def piece(self, name: str, arr: zarr.Array, start: int, stop: int) -> np.ndarray | None:
        """Rows ``start:stop`` (within one chunk) of ``arr``, or None, reported, when the chunk
        does not decode."""
        try:
            return arr[start:stop]
        except Exception as exc:  # any decoding or I/O error is damage to report, not a crash
            self.damaged(range(start, stop), f"{name}: chunk unreadable: {type(exc).__name__}: {exc}")
            return None

    @staticmethod
    def fill(arr: zarr.Array, n: int) -> np.ndarray:
        return np.full((n, *arr.shape[1:]), arr.metadata.fill_value, dtype=arr.dtype)

    def damaged(self, rows: Iterable[int], what: str) -> None:
        rows = [int(r) for r in rows]
        if rows:
            self.block.damage.append(Damage(self.collection, self.group, rows, what))

    def where(self, mask: np.ndarray, what: str) -> None:
        """Report the rows of the block where ``mask`` holds."""
        self.damaged(self.lo + np.flatnonzero(mask), what)


#: Rows of the frames table's per-atom columns a verify task holds at once.
PIECE_ROWS = 4096


def _check_frames(store: FeatureStore, collection: str, lo: int, hi: int, block: Block) -> None:
    """Rows ``lo:hi`` of the frames table: its 1-D columns read once (a chunk holds
    :data:`TABLE_ROWS`), the per-atom ones :data:`PIECE_ROWS` rows at a time."""
    arrays = dict(store.zarr_group(collection)[FRAMES].arrays())
    rows = _Rows(collection, FRAMES, lo, hi, block)
    flat = {name: rows.read(name, arr) for name, arr in arrays.items() if arr.ndim == 1}
    if "content_hash" in flat:
        hashes, known = flat["content_hash"]
        block.hashes = (lo, np.where(known, hashes, np.iinfo(np.int64).min))
    for key in CODED:
        if code_name(key) in flat and key in flat:
            (codes, coded), (strings, stored) = flat[code_name(key)], flat[key]
            names = np.array(["", *arrays[code_name(key)].attrs.get("names", [])], dtype=object)
            lost = (codes <= 0) | (codes >= len(names))
            rows.where(coded & lost, f"{code_name(key)}: codes lost")
            wrong = names[np.where(lost, 0, codes)] != strings
            rows.where(coded & stored & ~lost & wrong, f"{code_name(key)} does not match {key}")
    for start in range(lo, hi, PIECE_ROWS):
        stop = min(hi, start + PIECE_ROWS)
        piece = _Rows(collection, FRAMES, start, stop, block)
        values = {name: v[start - lo : stop - lo] for name, (v, _) in flat.items()}
        readable = {name: r[start - lo : stop - lo] for name, (_, r) in flat.items()}
        for name, arr in arrays.items():
            if arr.ndim > 1:
                values[name], readable[name] = piece.read(name, arr)
        _check_frame_rows(piece, values, readable)


def _check_frame_rows(rows: _Rows, values: dict[str, np.ndarray], readable: dict[str, np.ndarray]) -> None:
    n = rows.hi - rows.lo
    ok = {name: readable.get(name, np.zeros(n, bool)) for name in ("positions", "cell", "numbers", "energy", TARGET)}
    if "positions" in values:
        rows.where(ok["positions"] & ~np.isfinite(values["positions"]).all(axis=(1, 2)), "positions not finite")
    if "cell" in values:
        rows.where(ok["cell"] & ~np.isfinite(values["cell"]).all(axis=(1, 2)), "cell not finite")
    if "numbers" in values:
        rows.where(ok["numbers"] & (values["numbers"] <= 0).any(axis=1), "atomic numbers missing (zero)")
    if "density" in values:
        rows.where(readable["density"] & ~(values["density"] > 0), "density not a positive number")
    for name in ("source", "trajectory"):
        if name in values:
            rows.where(readable[name] & (values[name] == ""), f"{name} missing")
    if "energy" in values and TARGET in values:
        energy, per_atom = values["energy"], values[TARGET]
        both = ok["energy"] & ok[TARGET]
        rows.where(both & (np.isinf(energy) | np.isinf(per_atom)), "infinite energy")
        natoms = values["positions"].shape[1] if "positions" in values else 1
        agree = np.isclose(per_atom, energy / natoms, rtol=1e-12, atol=0, equal_nan=True)
        rows.where(both & ~agree, "energy and energy per atom disagree")
    if "content_hash" in values:
        content = ok["positions"] & ok["cell"] & ok["numbers"] & ok["energy"] & readable["content_hash"]
        made = np.array(
            [
                content_hash(z, p, c, e) if good else h
                for z, p, c, e, h, good in zip(
                    values["numbers"],
                    values["positions"],
                    values["cell"],
                    values["energy"],
                    values["content_hash"],
                    content,
                )
            ],
            dtype=np.int64,
        )
        rows.where(
            made != values["content_hash"], "content hash does not match the numbers, positions, cell and energy"
        )


def _check_group(store: FeatureStore, collection: str, group: str, lo: int, hi: int, block: Block) -> None:
    g = store.zarr_group(collection)[group]
    arrays = {k: a for k, a in g.arrays() if a.metadata.dimension_names and a.metadata.dimension_names[0] == SNAPSHOT}
    rows = _Rows(collection, group, lo, hi, block)
    status, known = rows.read("status", arrays["status"], pad=False)
    past = hi - lo - len(status)  # rows past the array: ingested after the last featurize, pending
    status = np.concatenate([status, np.full(past, PENDING, dtype=status.dtype)])
    known = np.concatenate([known, np.ones(past, dtype=bool)])
    rows.where(known & ~np.isin(status, (PENDING, DONE, FAILED)), "status codes other than pending/done/failed")
    block.pending = int((known & (status == PENDING)).sum())
    done, failed = known & (status == DONE), known & (status == FAILED)
    for name, arr in arrays.items():
        if name == "status" or arr.shape[0] <= lo:
            continue
        if name == "error":
            values, readable = rows.read(name, arr, pad=False)
            m = len(values)
            has = np.array([bool(e) for e in values], dtype=bool)
            rows.where(readable & done[:m] & has, "error messages on done rows")
            rows.where(readable & failed[:m] & ~has, "failed rows without an error message")
        elif arr.dtype.kind == "f":
            finite, readable = rows.finite(name, arr)
            m = len(finite)
            rows.where(readable & done[:m] & ~finite, f"{name}: NaN or inf in done rows")
    if RECORDS in dict(g.groups()):
        _check_records(store, collection, g, status, known, lo, hi, rows)


def _check_records(
    store: FeatureStore,
    collection: str,
    g: zarr.Group,
    status: np.ndarray,
    known: np.ndarray,
    lo: int,
    hi: int,
    rows: _Rows,
) -> None:
    size = store.shard_size(collection, g.basename)
    for s in range(lo // size, -(-hi // size)):
        region = store.shard_rows(collection, g.basename, s)
        local = slice(region.start - lo, region.stop - lo)
        done = np.flatnonzero(known[local] & (status[local] == DONE)) + region.start
        name = records_name(s)
        try:
            arr = g[f"{RECORDS}/{name}"]
        except KeyError:
            rows.damaged(done, f"{RECORDS}/{name} missing for done rows")
            continue
        try:
            records = arr[...]
            lost = arr.nchunks_initialized < arr.nchunks  # a lost data chunk reads back as zeros
        except Exception as exc:
            rows.damaged(range(region.start, region.stop), f"{RECORDS}/{name} unreadable: {type(exc).__name__}: {exc}")
            continue
        rows.block.chunks += 1
        if lost:
            rows.damaged(range(region.start, region.stop), f"{RECORDS}/{name}: data lost")
            continue
        if np.isnan(records).any():
            rows.damaged(range(region.start, region.stop), f"{RECORDS}/{name}: NaN in the records")
        owners = records[:, 0].astype(np.int64) + region.start if records.size else np.empty(0, np.int64)
        if ((owners < region.start) | (owners >= region.stop)).any():
            rows.damaged(range(region.start, region.stop), f"{RECORDS}/{name}: records of rows outside the shard")
            continue
        failed = np.flatnonzero(known[local] & (status[local] == FAILED)) + region.start
        # records of pending rows are what a task killed before its commit leaves: overwritten next time
        rows.damaged(np.intersect1d(owners, failed), f"{RECORDS}/{name}: records of failed rows")
        rows.damaged(np.setdiff1d(done, owners), f"{RECORDS}/{name}: done rows without records")


def check_block(path: str, collection: str, group: str, lo: int, hi: int) -> Block:
    """Check snapshots ``lo:hi`` of one group (``frames`` or a descriptor group) of a collection
    (a verify task; runs on a Dask worker)."""
    store = FeatureStore(path, mode="r")
    block = Block()
    if group == FRAMES:
        _check_frames(store, collection, lo, hi, block)
    else:
        _check_group(store, collection, group, lo, hi, block)
    return block


def _blocks(store: FeatureStore) -> Iterator[tuple[str, str, int, int]]:
    """``(collection, group, lo, hi)`` of every task: blocks of whole chunks (of a descriptor
    group: whole shards), about :data:`TABLE_ROWS` snapshots each (a chunk of the 1-D columns)."""
    for coll in store.collections:
        n = store.n_snapshots(coll)
        for group in [FRAMES, *store.descriptor_groups(coll)]:
            unit = store.chunk_size if group == FRAMES else store.shard_size(coll, group)
            step = unit * max(1, TABLE_ROWS // unit)
            for lo in range(0, n, step):
                yield coll, group, lo, min(n, lo + step)


def _provenance(store: FeatureStore, collection: str, report: VerifyReport) -> None:
    """Groups of ``collection`` without a provenance record, or whose record does not hash to
    their key, are damage (of the whole group)."""
    n = store.n_snapshots(collection)
    for name, g in sorted(store.zarr_group(collection).groups()):
        if name == FRAMES:
            continue
        report.groups += 1
        prov = dict(g.attrs.get("provenance", {}))
        rows = list(range(n))
        if not {"descriptor", "params", "versions", "key"} <= set(prov):
            report.damage.append(Damage(collection, name, rows, "no provenance record", whole_group=True))
            continue
        if record_key(prov) != prov["key"] or name != f"{prov['descriptor']}-{prov['key']}":
            report.damage.append(
                Damage(
                    collection,
                    name,
                    rows,
                    f"provenance record hashes to {record_key(prov)}, but the group claims "
                    f"{name.rpartition('-')[2]} (record key {prov['key']})",
                    whole_group=True,
                )
            )


def verify_store(path: str | Path, client: Client | None = None, progress: bool = True) -> VerifyReport:
    """Check the whole store at ``path`` (see the module docstring), block by block: on
    ``client``'s workers when given, else in this process."""
    store = FeatureStore(path, mode="r")
    report = VerifyReport()
    for coll in store.collections:
        report.snapshots += store.n_snapshots(coll)
        _provenance(store, coll, report)
    tasks = list(_blocks(store))
    pending: Counter[tuple[str, str]] = Counter()
    hashes: dict[str, list[tuple[int, np.ndarray]]] = {}
    if client is None:
        results: Iterable = ((task, check_block(str(store.path), *task)) for task in tasks)
    else:
        futures = {client.submit(check_block, str(store.path), *task, pure=False): task for task in tasks}
        results = ((futures[f], f.result()) for f in as_completed(futures))
    for (coll, group, _, _), block in tqdm(
        results, total=len(tasks), desc="verify", unit="block", disable=not progress
    ):
        report.damage += block.damage
        report.chunks += block.chunks
        pending[coll, group] += block.pending
        if block.hashes is not None:
            hashes.setdefault(coll, []).append(block.hashes)
    for coll, parts in hashes.items():  # unique across blocks (the smallest int64: unreadable)
        values = np.concatenate([v for _, v in sorted(parts, key=lambda p: p[0])])
        _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        twins = np.flatnonzero((counts[inverse] > 1) & (values != np.iinfo(np.int64).min))
        if twins.size:
            report.damage.append(Damage(coll, FRAMES, twins.tolist(), "duplicate snapshots (same content hash)"))
    for (coll, group), count in sorted(pending.items()):
        descriptor = store.descriptor_groups(coll).get(group, {}).get("descriptor", group)
        if count and descriptor not in PARTIAL:
            report.notes.append(
                f"{coll}/{group}: {count} snapshots pending (run `phstore featurize {descriptor}` to finish them)"
            )
    report.damage.sort(key=lambda d: (d.collection, d.group != FRAMES, d.group, d.rows[:1], d.what))
    _name_sources(store, report)
    return report


def _name_sources(store: FeatureStore, report: VerifyReport) -> None:
    """The source file and frame of every damaged frames row, where they still read."""
    for coll in sorted({d.collection for d in report.damage if d.group == FRAMES}):
        rows = sorted({r for d in report.damage if d.group == FRAMES and d.collection == coll for r in d.rows})
        for r, v in readable_rows(store, coll, rows, ["source", "source_index"]).items():
            if v["source"]:
                report.sources[coll, r] = (str(v["source"]), int(v["source_index"]))


def readable_rows(
    store: FeatureStore, collection: str, rows: Sequence[int], names: Sequence[str]
) -> dict[int, dict[str, Any]]:
    """``{row: {name: value}}`` of the frames rows ``rows`` (ascending) that still read: all at
    once, else row by row, so a chunk that does not decode costs only its own rows."""
    try:
        v = store.read_rows(collection, FRAMES, np.asarray(rows, np.int64), names)
        return {r: {k: v[k][i] for k in names} for i, r in enumerate(rows)}
    except Exception:  # a damaged chunk among them
        out = {}
        for r in rows:
            try:
                v = store.read_rows(collection, FRAMES, slice(r, r + 1), names)
            except Exception:  # lost with the rest
                continue
            out[r] = {k: v[k][0] for k in names}
        return out
