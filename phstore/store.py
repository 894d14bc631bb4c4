"""The on-disk feature store: one Zarr v3 directory, read and written through xarray.

Layout (see ARCHITECTURE.md for the invariants)::

    STORE/                          root group; attrs: phstore format, chunk_size, sources read
      rejected_{source,index,reason}  the frames ingest refused, one row each
      <collection>/                 e.g. "C216": one composition (species and atom count)
        frames/                     snapshot table: positions, cells, energies, keys
        <descriptor>-<key>/         one group per descriptor *variant* (parameters + versions)
          records/c<shard>          ragged per-shard output (e.g. persistence diagrams)

Every array that has a ``snapshot`` dimension is chunked along it (the unit of reading) by the
store-wide ``chunk_size`` and written in Zarr shards of several chunks (one file each): a
descriptor group's ``shard_size`` is its unit of work, so a featurize task owns whole shards
and no two tasks ever write one file. The frames table's per-snapshot scalars (energy, density,
keys) and each group's status and errors, which one process writes, are unsharded: numbers
chunked by ``NUMBER_ROWS``, strings, status and errors by ``TABLE_ROWS``, so reading a whole
column is a few chunk reads. A collection's attribute
``n_snapshots`` is the commit marker of ingest: rows past it (left by an interrupted append) are
invisible and are overwritten by the next ingest.
"""

from __future__ import annotations

import fcntl
import fnmatch
import functools
import hashlib
import html
import json
import logging
import os
import socket
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from ase import Atoms
from xarray.core.indexing import IndexSelResult
from xarray.indexes import PandasIndex

from phstore.errors import PhstoreError
from phstore.params import require

log = logging.getLogger(__name__)

FORMAT = "phstore-1"
SNAPSHOT = "snapshot"
DEFAULT_CHUNK_SIZE = 32
# Lossless codec of dense float arrays: bit-shuffled float32 exposes the sign and exponent bits to
# lz4 (ratios and times in benchmarks/README.md).
DENSE_CODEC = zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")
# Codec of ragged records (PH diagrams: float64 rows): zstd level 1, as dense as Zarr's default
# level and twice as fast (benchmarks/README.md).
RECORDS_CODEC = zarr.codecs.ZstdCodec(level=1)
FRAMES = "frames"
RECORDS = "records"
LOCK = ".phstore-writer.lock"  # the writer lock file of layout 1 (removed by :meth:`FeatureStore._upgrade`)
#: The store layout a writer leaves (root attribute ``layout``; a store without one is layout 1):
#: 2 names the dimensions of records arrays (plain xarray needs them) and locks with flock; 3
#: chunks each descriptor group's status and error messages by ``TABLE_ROWS`` (the writer commits
#: them); 4 writes new frames tables and groups in Zarr shards (a group's ``shard_size`` attribute,
#: its unit of work; groups without it are sharded by the chunk, as layouts 1-3 wrote them).
LAYOUT = 4
#: Snapshots per chunk of the 1-D columns one process writes (the frames table's strings, a
#: group's status and errors): a whole column of 10⁶ snapshots reads in 16 chunks (Zarr's cost is
#: per chunk, ~0.6 ms). Every append rewrites its last chunk: 73 ms for 1000 rows of a strings
#: column at 65536, 281 ms at 2^18.
TABLE_ROWS = 65536
#: Snapshots per chunk of the frames table's 1-D numbers (density, frame, energies, codes of the
#: string keys, hashes): what every selection reads whole, in 4 chunks at 10⁶ snapshots (an
#: append rewrites its last chunk in 8 ms).
NUMBER_ROWS = 2**18
#: A shard (one file) holds at most this many chunks along the snapshots, ...
MAX_SHARD_CHUNKS = 64
#: ... at most this many bytes before compression (what a featurize task holds of its shard), ...
SHARD_BYTES = 64 << 20
#: ... and a descriptor group is cut in at least this many shards (tasks) when it has the chunks.
MIN_TASKS = 64
REJECTED = ("rejected_source", "rejected_index", "rejected_reason")  # root arrays: frames ingest refused

# Status codes of a descriptor row.
PENDING, DONE, FAILED = 0, 1, 2

#: The frames table's column of energies per atom (eV/atom): what models learn.
TARGET = "energy_per_atom"


class Column(NamedTuple):
    """One column of the frames table: its dimensions after ``snapshot``, dtype, units (UDUNITS
    spelling, as CF asks; "" for none) and a CF ``long_name``."""

    dims: tuple[str, ...]
    dtype: Any
    units: str
    long_name: str


#: The frames table, one row per snapshot. Ingest fills every column of each row
#: (:meth:`FeatureStore.append_frames`). Unlabelled frames (MD without DFT) have NaN energies,
#: forces and stress: they are featurized, never trained on. ``stress`` is Voigt order (xx, yy,
#: zz, yz, xz, xy); ``labels`` is the JSON of the frame's other ``atoms.info`` entries.
FRAME_COLUMNS: dict[str, Column] = {
    "positions": Column(("atom", "xyz"), np.float64, "angstrom", "Cartesian positions"),
    "cell": Column(("cell_vector", "xyz"), np.float64, "angstrom", "cell vectors (rows)"),
    "numbers": Column(("atom",), np.int16, "", "atomic numbers"),
    "energy": Column((), np.float64, "eV", "potential energy of the cell"),
    TARGET: Column((), np.float64, "eV", "potential energy per atom"),
    "forces": Column(("atom", "xyz"), np.float64, "eV/angstrom", "forces"),
    "stress": Column(("voigt",), np.float64, "eV/angstrom^3", "stress, Voigt order xx yy zz yz xz xy"),
    "density": Column((), np.float64, "g/cm^3", "mass density"),
    "trajectory": Column((), object, "", "source file path without suffix"),
    "frame": Column((), np.int64, "", "frame index within the trajectory"),
    "process": Column((), object, "", "process label"),
    "config_type": Column((), object, "", "config_type label"),
    "labels": Column((), object, "", "other labels of the frame (JSON)"),
    "temperature": Column((), np.float64, "K", "temperature label"),
    "dataset": Column((), object, "", "origin of the energies (one code and functional)"),
    "source": Column((), object, "", "source file"),
    "source_index": Column((), np.int64, "", "frame index within the source file"),
    "content_hash": Column((), np.int64, "", "hash of numbers, positions, cell and energy"),
}


#: A snapshot's keys and its label ``config_type``: coordinates, each with a
#: :class:`SnapshotIndex`, of every Dataset :meth:`FeatureStore.dataset` returns.
KEYS = ("density", "trajectory", "frame", "dataset", "config_type")

#: String keys that selections and summaries read for many snapshots at once. Each is stored
#: also as ``<key>_code`` (int32: 1 + the index of the snapshot's value in that array's
#: attribute ``names``; 0 where lost), so a whole column reads as integers: decoding a string
#: costs ~1 µs. phstore's own readers (:meth:`FeatureStore.read_rows`) read the codes; plain
#: xarray sees both.
CODED = ("trajectory", "dataset", "config_type")


def as_objects(values: np.ndarray) -> np.ndarray:
    """``values`` read from Zarr, with strings as ``object`` (numpy's StringDType does not mix
    with NaN in xarray operations such as ``where``)."""
    return values.astype(object) if values.dtype.kind == "T" else values


def code_name(key: str) -> str:
    """The frames array of the codes of string key ``key``."""
    return f"{key}_code"


CODE_ATTRS = {"long_name": "1 + index of the value in the attribute names (0: lost)"}


def encode(values: np.ndarray | Sequence[str], names: list[str]) -> np.ndarray:
    """The codes (int32, see :data:`CODED`) of string ``values`` in ``names``, which is extended
    by the values it lacks."""
    local, uniques = pd.factorize(np.asarray(values, dtype=object))
    index = {name: i for i, name in enumerate(names)}
    for u in uniques:
        if u not in index:
            index[u] = len(names)
            names.append(str(u))
    return np.array([index[u] + 1 for u in uniques], dtype=np.int32)[local]


class SnapshotIndex(PandasIndex):
    """The index of a snapshot key, whose values are in snapshot order, not sorted: ``.sel`` with
    a slice keeps the values within it (both ends included), with a value or a list the equal
    ones (floats within ``tolerance``, when given), in snapshot order."""

    def sel(self, labels: dict[Any, Any], method: str | None = None, tolerance: Any = None) -> IndexSelResult:
        ((_, value),) = labels.items()
        values = self.index.values
        if isinstance(value, slice):
            keep = np.ones(len(values), dtype=bool)
            if value.start is not None:
                keep &= values >= value.start
            if value.stop is not None:
                keep &= values <= value.stop
        elif tolerance is not None:
            keep = np.any(np.abs(values[:, None] - np.atleast_1d(value)[None, :]) <= tolerance, axis=1)
        else:
            keep = np.isin(values, np.atleast_1d(np.asarray(value, dtype=values.dtype)))
        return IndexSelResult({self.dim: np.flatnonzero(keep)})


def label_mask(values: np.ndarray | Sequence[str], wanted: str | Sequence[str]) -> np.ndarray:
    """Where string ``values`` (e.g. each snapshot's dataset) match ``wanted``: one name or
    several, each exact or a shell pattern (``data/*``)."""
    codes, unique = pd.factorize(np.asarray(values, dtype=object))  # patterns meet each name once
    patterns = [wanted] if isinstance(wanted, str) else list(wanted)
    hits = np.array([any(fnmatch.fnmatchcase(v, p) or v == p for p in patterns) for v in unique], dtype=bool)
    return hits[codes]


def mixed_datasets(where: str, names: Sequence[str], what: str) -> ValueError:
    """The error of ``what`` (e.g. "train on", "map") snapshots of ``where`` whose energies come
    from several datasets ``names``, saying how to choose."""
    shown = list(names) if len(names) <= 8 else [*names[:8], "…"]
    return ValueError(
        f"{where} holds energies of {len(names)} datasets, which may not be comparable: {shown}; {what} one "
        "with dataset=... (--dataset NAME), or several of one code and functional with a pattern (--dataset 'DIR/*')"
    )


#: Dimensions descriptor variables share with the frames table (and keep their names in
#: :meth:`FeatureStore.dataset`): the atoms of a snapshot, in the stored order.
SHARED_DIMS = (SNAPSHOT, "atom")

#: Sizes of the frames table's dimensions after ``snapshot`` (``atom``: the collection's ``natoms``).
COLUMN_SIZES = {"xyz": 3, "cell_vector": 3, "voigt": 6}


def missing_column(name: str, n: int, natoms: int) -> np.ndarray:
    """The values a frames column written by a later phstore holds for ``n`` snapshots of a
    store made before it: NaN (no forces, no stress) or empty strings."""
    c = FRAME_COLUMNS[name]
    shape = (n, *(natoms if d == "atom" else COLUMN_SIZES[d] for d in c.dims))
    return np.full(shape, "" if c.dtype is object else np.nan, dtype=c.dtype)


def frames_table(rows: Sequence[dict[str, Any]]) -> xr.Dataset:
    """Snapshot rows (dicts holding every column of :data:`FRAME_COLUMNS`) as the frames table."""
    for r in rows:
        if set(r) != set(FRAME_COLUMNS):
            raise ValueError(f"a frames row has columns {sorted(r)}; the frames table has {sorted(FRAME_COLUMNS)}")
    return xr.Dataset(
        {
            name: (
                (SNAPSHOT, *c.dims),
                np.array([r[name] for r in rows], dtype=c.dtype),
                column_attrs(c),
            )
            for name, c in FRAME_COLUMNS.items()
        }
    )


def content_hash(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, energy: float) -> int:
    """64-bit hash of a snapshot's atomic numbers, positions (Å), cell (Å) and energy (eV, NaN
    when unlabelled): its identity, by which ingest deduplicates and verify checks the content."""
    h = hashlib.blake2b(digest_size=8)
    for arr in (np.asarray(numbers, np.int64), np.asarray(positions, np.float64), np.asarray(cell, np.float64)):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(np.float64(energy).tobytes())
    return int.from_bytes(h.digest(), "little", signed=True)


def column_attrs(column: Column) -> dict[str, str]:
    """The CF attributes of a frames column."""
    return {"long_name": column.long_name, **({"units": column.units} if column.units else {})}


# zarr warns that variable-length strings are not yet in the v3 spec; xarray and zarr-python
# read them back correctly, which is all the store relies on.
warnings.filterwarnings("ignore", message=".*v3_unstable_dtype.*")
warnings.filterwarnings("ignore", message=".*not part of the Zarr format 3 specification.*")
warnings.filterwarnings("ignore", category=UserWarning, module="zarr.*")


class StoreError(PhstoreError, RuntimeError):
    """A store is missing, of another format, or inconsistent."""


class StoreLocked(StoreError):
    """Another process is writing the store."""


class ChunkSizeError(StoreError, ValueError):
    """A chunk size that is not a positive whole number, or not the store's."""


class UnknownCollection(StoreError, KeyError):
    """The store holds no such collection."""

    def __str__(self) -> str:  # KeyError's own would quote the message
        return str(self.args[0])


#: Open modes of a store: what each may do.
MODES = {"r": "read", "r+": "read and write an existing store", "a": "read and write, creating the store when missing"}


_held: dict[Path, int] = {}  # writer locks this process holds, with their nesting depth


@dataclass(frozen=True)
class VariableSpec:
    """One per-snapshot output array of a descriptor: ``(snapshot, *dims)`` of ``shape``.

    Chunks are compressed with Zarr's default zstd, or with ``DENSE_CODEC`` when ``dense`` is
    set: for dense float output with few repeated bytes (per-atom SOAP and SchNet), where zstd
    gains little and is slower to write and read. ``scaling`` (stored as the array's
    attribute) says how models put the variable on a common footing: ``"zscore"``, each feature
    to unit variance, or ``"block"``, one scale for the whole variable (an image's pixels).
    ``units`` (UDUNITS spelling, "1" for a pure number) and ``long_name`` are its CF attributes.
    """

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    fill: Any
    dense: bool = False
    scaling: str = "zscore"
    units: str = ""
    long_name: str = ""

    def attrs(self) -> dict[str, str]:
        """The array's attributes: its scaling and CF attributes."""
        cf = {"long_name": self.long_name, "units": self.units}
        return {"scaling": self.scaling, **{k: v for k, v in cf.items() if v}}


#: Coordinates of a descriptor's own dimensions: ``{dimension: (values, CF attributes)}``
#: (e.g. a histogram's bin centres, Å²).
Coordinates = dict[str, tuple[np.ndarray, dict[str, str]]]


def records_name(shard: int) -> str:
    """The name of shard ``shard``'s ragged records array in a group's ``records`` subgroup (of a
    group made before layout 4, whose shards are its chunks, the chunk's)."""
    return f"c{shard:06d}"


def shard_snapshots(chunk_size: int, row_bytes: int, n_chunks: int | None = None) -> int:
    """Snapshots per shard of arrays chunked by ``chunk_size`` snapshots of ``row_bytes`` each
    (uncompressed): ``chunk_size`` times the largest power of two of chunks within
    :data:`MAX_SHARD_CHUNKS` and :data:`SHARD_BYTES`, and, for a descriptor group of ``n_chunks``
    chunks, within ``n_chunks / MIN_TASKS`` (so a small store still gives every worker tasks)."""
    limit = min(MAX_SHARD_CHUNKS, SHARD_BYTES // max(1, row_bytes * chunk_size))
    if n_chunks is not None:
        limit = min(limit, n_chunks // MIN_TASKS)
    k = 1
    while 2 * k <= limit:
        k *= 2
    return chunk_size * k


def snapshot_encoding(chunks: int, shard: int, tail: Sequence[int] = ()) -> dict[str, tuple[int, ...]]:
    """The Zarr chunks (and shards, when a shard holds several chunks) of an array of shape
    ``(snapshot, *tail)``: whole along the other dimensions."""
    encoding = {"chunks": (chunks, *tail)}
    return encoding | ({"shards": (shard, *tail)} if shard > chunks else {})


#: The encoding of a 1-D snapshot column written by one process (frames keys, status, errors).
TABLE_ENCODING = snapshot_encoding(TABLE_ROWS, TABLE_ROWS)
#: ... and of the frames table's 1-D numbers.
NUMBER_ENCODING = snapshot_encoding(NUMBER_ROWS, NUMBER_ROWS)


def outer_step(arr: zarr.Array) -> int:
    """Snapshots per file of ``arr`` (its shard, or its chunk when it is not sharded): the unit
    in which it is written whole."""
    return (arr.shards or arr.chunks)[0]


def _open_root(path: Path, mode: str) -> zarr.Group:
    # never the consolidated metadata: it is what the store held when its last writer ended
    return zarr.open_group(str(path), mode=mode, zarr_format=3, use_consolidated=False)


def consolidate(path: Path) -> None:
    """Rewrite the consolidated metadata of the store at ``path`` (what plain xarray reads)."""
    try:
        zarr.consolidate_metadata(str(path), zarr_format=3)
    except Exception as exc:  # phstore never reads it; a plain reader falls back, with a warning
        log.warning("could not consolidate the metadata of %s: %s", path, exc)


class FeatureStore:
    """A feature store on disk.

    Parameters
    ----------
    path:
        Directory of the Zarr v3 store.
    mode:
        ``"r"`` to read, ``"r+"`` to read and write an existing store, ``"a"`` to read and
        write, creating the store when it is missing (what ingest does).
    chunk_size:
        Snapshots per chunk of a store that is created (default ``DEFAULT_CHUNK_SIZE``); given
        for an existing store, it must be the store's.
    writer:
        The token of the writer lock's holder (:attr:`writer_token`), given to a task that
        writes on the holder's behalf in another process (a featurize task on a Dask worker);
        its writes are refused once another writer has taken the lock.
    """

    def __init__(
        self, path: str | Path, mode: str = "r", chunk_size: int | None = None, writer: str | None = None
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: choose one of {MODES}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ChunkSizeError(f"a chunk size is a positive number of snapshots, not {chunk_size!r}")
        self.path = Path(path)
        self.mode = mode
        self.writer_token = writer
        self._shard_sizes: dict[tuple[str, str], int] = {}
        exists = (self.path / "zarr.json").exists()
        if not exists and mode != "a":
            raise StoreError(
                f"no phstore store at {self.path}; create one with `phstore ingest SOURCE --store {self.path}`"
            )
        self._root = _open_root(self.path, "r" if mode == "r" else "a")
        if not exists:
            self._root.attrs.update(
                {"phstore": FORMAT, "layout": LAYOUT, "chunk_size": chunk_size or DEFAULT_CHUNK_SIZE}
            )
        if self._root.attrs.get("phstore") != FORMAT:
            raise StoreError(f"{self.path} is a Zarr store but not a {FORMAT} feature store")
        if self._root.attrs.get("layout", 1) > LAYOUT:
            raise StoreError(
                f"{self.path} has store layout {self._root.attrs['layout']}, written by a newer phstore than this "
                f"one (layout {LAYOUT}); upgrade phstore to read it"
            )
        if chunk_size is not None and chunk_size != self.chunk_size:
            raise ChunkSizeError(
                f"{self.path} holds chunks of {self.chunk_size} snapshots; a chunk size of {chunk_size} applies only "
                "when a store is created: leave it out, or ingest into a new store"
            )

    # ------------------------------------------------------------------ reading
    @property
    def chunk_size(self) -> int:
        """Snapshots per chunk, fixed when the store is created."""
        return int(self._root.attrs["chunk_size"])

    def chunk_of(self, rows: int | np.ndarray) -> int | np.ndarray:
        """The chunk index of snapshot row(s) ``rows`` (the unit of reading)."""
        return rows // self.chunk_size

    def shard_size(self, collection: str, group: str) -> int:
        """Snapshots per shard of a descriptor group (its attribute ``shard_size``, fixed when the
        group is made, so read once; the chunk size for groups made before layout 4): the unit
        of work, one featurize task's, written whole."""
        if (collection, group) not in self._shard_sizes:
            attrs = self._root[f"{collection}/{group}"].attrs
            self._shard_sizes[collection, group] = int(attrs.get("shard_size", self.chunk_size))
        return self._shard_sizes[collection, group]

    def shard_of(self, collection: str, group: str, rows: np.ndarray) -> np.ndarray:
        """The shard index of each snapshot row of ``rows`` in a descriptor group."""
        return np.asarray(rows, dtype=np.int64) // self.shard_size(collection, group)

    def shard_rows(self, collection: str, group: str, shard: int) -> slice:
        """The committed snapshot rows of ``shard`` of a descriptor group."""
        size = self.shard_size(collection, group)
        return slice(shard * size, min(self.n_snapshots(collection), (shard + 1) * size))

    def n_shards(self, collection: str, group: str) -> int:
        """How many shards of a descriptor group the committed snapshots of ``collection`` fill."""
        return -(-self.n_snapshots(collection) // self.shard_size(collection, group))

    @property
    def collections(self) -> list[str]:
        """Names of the collections (one per composition), sorted."""
        return sorted(name for name, _ in self._root.groups())

    def zarr_group(self, collection: str) -> zarr.Group:
        """The raw Zarr group of ``collection`` (also for checks that read every chunk: ``verify``)."""
        try:  # looked up directly: listing every collection costs a Zarr read per collection
            group = self._root[collection]
        except KeyError:
            group = None
        if "/" in collection or not isinstance(group, zarr.Group):
            raise UnknownCollection(f"no collection {collection!r} in {self.path}; collections: {self.collections}")
        return group

    def n_snapshots(self, collection: str) -> int:
        """Committed snapshot count of a collection."""
        return int(self.zarr_group(collection).attrs.get("n_snapshots", 0))

    def collection_attrs(self, collection: str) -> dict[str, Any]:
        return dict(self.zarr_group(collection).attrs)

    def _open(self, collection: str, group: str, n: int, rows: np.ndarray | None) -> xr.Dataset:
        """Rows ``rows`` (ascending snapshot indices below ``n``; all ``n`` when None) of a group,
        as dask arrays whose chunks each read the rows of one file (shard) of their variable: only
        the Zarr chunks that hold the rows are read, each once, and the graph grows with the
        selection, not the store.

        Strings come back as ``object`` arrays (numpy's StringDType does not mix with NaN in
        xarray operations such as ``where``). A torn append leaves arrays of different lengths;
        then each variable is opened on its own and cut before they are combined.
        """
        path, name = str(self.path), f"{collection}/{group}"
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        index: slice | np.ndarray = rows  # a run of rows as a slice: a lazy array reads it as one
        if not len(rows) or rows[-1] - rows[0] + 1 == len(rows):
            index = slice(int(rows[0]), int(rows[-1]) + 1) if len(rows) else slice(0, 0)

        def lazy(drop: Sequence[str] = ()) -> xr.Dataset:  # backend arrays: nothing read yet
            ds = xr.open_dataset(
                path, engine="zarr", group=name, chunks=None, cache=False, drop_variables=drop,
                consolidated=False, zarr_format=3,
            )  # fmt: skip
            return ds.isel({SNAPSHOT: index})  # once: indexing a lazily indexed array composes the two

        try:
            ds = lazy()
        except ValueError:
            names = [k for k, _ in self._root[name].arrays()]
            ds = xr.merge(lazy([o for o in names if o != k]) for k in names)

        @functools.cache
        def dask_chunks(step: int) -> tuple[int, ...]:  # rows of each file (shard) of ``step`` rows holding some
            counts = np.bincount(rows // step)
            return tuple(int(c) for c in counts if c) or (0,)

        chunked = {}
        for k, v in ds.variables.items():
            if SNAPSHOT in v.dims:  # a dask chunk per file (shard) holding rows: Zarr reads only their chunks
                step = (v.encoding.get("shards") or v.encoding["chunks"])[0]
                # a fresh name: dask would otherwise hash the backend array (a third of the time)
                v = v.chunk({SNAPSHOT: dask_chunks(step)}, name=f"{name}/{k}-{uuid.uuid4().hex}")
            chunked[k] = as_objects(v)
        return ds.assign(chunked)

    def frames(self, collection: str, rows: np.ndarray | None = None) -> xr.Dataset:
        """The lazily loaded snapshot table of ``collection`` (committed rows only; ``rows``:
        ascending snapshot indices, all when None)."""
        n = self.n_snapshots(collection)
        ds = self._open(collection, FRAMES, n, rows)
        ds = ds.drop_vars([code_name(k) for k in CODED if code_name(k) in ds])  # the strings are there
        missing = [c for c in FRAME_COLUMNS if c not in ds]  # a store made before these columns
        if not missing:
            return ds
        natoms = int(self.collection_attrs(collection).get("natoms", 0))
        return ds.assign(
            {c: ((SNAPSHOT, *FRAME_COLUMNS[c].dims), missing_column(c, ds.sizes[SNAPSHOT], natoms)) for c in missing}
        )

    def column(self, collection: str, name: str) -> np.ndarray:
        """One value per committed snapshot of a frames column (e.g. ``density``), read from Zarr
        directly as numpy (strings as objects): what selections and summaries look at."""
        return self.read_rows(collection, FRAMES, slice(0, self.n_snapshots(collection)), [name])[name]

    def frame_labels(self, collection: str) -> list[str]:
        """Names of the frames table's string columns of one value per snapshot (trajectory,
        dataset, config_type and the string labels the source frames carried)."""
        group = self._root[f"{collection}/{FRAMES}"]
        return sorted(name for name, array in group.arrays() if array.ndim == 1 and array.dtype.kind in "OTU")

    @property
    def sources(self) -> dict[str, str]:
        """``{content digest: path}`` of every source file ingest has read to its end (the path
        it was first read at): a file is known by its content, wherever it lies."""
        return dict(self._root.attrs.get("sources", {}))

    def add_sources(self, sources: dict[str, str]) -> None:
        """Record source files read to their end (after their frames are committed)."""
        self._require_writable()
        self._root.attrs["sources"] = sources | self.sources

    def descriptor_groups(self, collection: str) -> dict[str, dict[str, Any]]:
        """``{group name: provenance}`` of every descriptor variant stored for ``collection``."""
        coll = self.zarr_group(collection)
        return {
            name: dict(g.attrs["provenance"])
            for name, g in sorted(coll.groups())
            if name != FRAMES and "provenance" in g.attrs
        }

    def descriptor(
        self, collection: str, group: str, rows: np.ndarray | None = None, unfinished: bool = False
    ) -> xr.Dataset:
        """The lazily loaded rows of one descriptor variant, aligned to the committed snapshots
        (``rows``: ascending snapshot indices, all when None).

        Rows that were never featurized read as ``status == PENDING``. The values of rows that
        are not done (pending or failed) read as their fill value (NaN), whatever a task left
        there, unless ``unfinished`` (then as stored).
        """
        n = self.n_snapshots(collection)
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        stored = min(n, self._root[f"{collection}/{group}/status"].shape[0])
        held = rows[rows < stored]
        ds = self._open(collection, group, n, held)
        tail = len(rows) - ds.sizes[SNAPSHOT]
        if tail:  # ingested after the last featurize: pad lazily with pending rows
            fill = xr.Dataset(
                {
                    v: (
                        x.dims,
                        da.full(
                            (tail, *x.shape[1:]),
                            self._root[f"{collection}/{group}/{v}"].metadata.fill_value,
                            dtype=x.dtype,
                            chunks=self.chunk_size,
                        ),
                    )
                    for v, x in ds.data_vars.items()
                }
            )
            ds = xr.concat([ds, fill], dim=SNAPSHOT, combine_attrs="override")
        status = self.read_rows(collection, group, held, ["status"])["status"] if len(held) else np.zeros(0, np.int8)
        status = np.concatenate([status, np.full(len(rows) - len(held), PENDING, dtype=np.int8)])
        ds = ds.assign(status=(SNAPSHOT, status, ds["status"].attrs))  # read already: as numpy
        done = status == DONE
        if unfinished or done.all():
            return ds

        def masked(name: str, x: xr.DataArray) -> xr.DataArray:  # the mask chunked as x: no rechunk
            mask = xr.DataArray(da.from_array(done, chunks=(x.data.chunks[0],), name=False), dims=SNAPSHOT)
            return x.where(mask, x.dtype.type(self._root[f"{collection}/{group}/{name}"].metadata.fill_value))

        return ds.assign({v: masked(v, x) for v, x in ds.data_vars.items() if v not in ("status", "error")})

    def status(self, collection: str, group: str) -> np.ndarray:
        """Status code of every committed snapshot in a group (pending past its stored rows),
        read from Zarr directly: the cheap question every resume and selection asks."""
        n = self.n_snapshots(collection)
        stored = self._root[f"{collection}/{group}/status"]
        try:
            values = stored[: min(n, stored.shape[0])]
        except Exception as exc:  # a damaged chunk: say how to mend it, not a codec's traceback
            raise StoreError(
                f"{collection}/{group}: the status does not read back ({type(exc).__name__}: {exc}); run "
                f"`phstore repair --store {self.path}` (its damaged chunks become pending), then this again"
            ) from exc
        return np.concatenate([values, np.full(n - len(values), PENDING, dtype=values.dtype)])

    def dataset(self, collection: str, rows: np.ndarray | None = None, unfinished: bool = False) -> xr.Dataset:
        """Frames and every descriptor of ``collection`` in one lazy Dataset (of the snapshots
        ``rows``, ascending indices, or all when None); descriptor values of rows not done read
        as missing unless ``unfinished`` (:meth:`descriptor`).

        The snapshot keys (:data:`KEYS`: density, trajectory, frame, dataset, config_type) are coordinates
        with an index, so ``ds.sel(density=slice(2.0, 2.5))``, ``ds.sel(trajectory=...)``,
        ``ds.groupby("trajectory")`` and ``ds.where(..., drop=True)`` work on it.

        Descriptor variables (and their own dimensions and coordinates) are named
        ``<descriptor>_<variable>`` (e.g. ``ph_histogram``, on ``ph_birth`` × ``ph_death``, bin
        centres in Å²) when the collection holds one variant of that descriptor, and
        ``<descriptor>_<key>_<variable>`` when it holds several, so features of different
        parameters are never mixed under one name. Per-atom variables share the frames'
        ``atom`` dimension (:data:`SHARED_DIMS`). Each descriptor variable's attributes hold its
        units, its group, provenance key and parameters (JSON).
        """
        n = self.n_snapshots(collection)
        ds = self.frames(collection, rows).assign_attrs(collection=collection)
        # the keys' indexes need their values: read as numpy, not computed through dask
        keys = self.read_rows(collection, FRAMES, slice(0, n) if rows is None else rows, KEYS)
        ds = ds.assign({k: (SNAPSHOT, v, ds[k].attrs) for k, v in keys.items()})
        groups = self.descriptor_groups(collection)
        names = [prov["descriptor"] for prov in groups.values()]
        for group, prov in groups.items():
            name = prov["descriptor"]
            prefix = name if names.count(name) == 1 else f"{name}_{prov['key']}"
            desc = self.descriptor(collection, group, rows, unfinished)
            names_map = {v: f"{prefix}_{v}" for v in [*desc.variables, *desc.dims] if v not in SHARED_DIMS}
            renamed = desc.rename(names_map)
            for v in renamed.data_vars:
                renamed[v].attrs.update(
                    descriptor_group=group, provenance_key=prov["key"], parameters=json.dumps(prov["params"])
                )
            ds = ds.merge(renamed, compat="override", join="override")
        ds = ds.set_coords(KEYS)
        for key in KEYS:
            ds = ds.set_xindex(key, SnapshotIndex)
        return ds

    def sel(self, collection: str | None = None, unfinished: bool = False, **criteria: Any) -> xr.Dataset:
        """Lazily select snapshots by density (g/cm³), trajectory, frame and labels: the criteria
        of :meth:`select` (``density``, ``trajectory``, ``frames``, ``density_tol``, ``dataset``,
        ``config_type``).

        Only the chunks that hold the selected snapshots are read when values are loaded.
        ``collection`` may be omitted when the store holds exactly one. Descriptor values of
        snapshots not done (``<descriptor>_status``) read as missing, unless ``unfinished``.
        """
        collection, rows = self.select(collection, **criteria)
        return self.dataset(collection, rows, unfinished)

    def select(
        self,
        collection: str | None = None,
        *,
        density: float | Sequence[float] | slice | None = None,
        trajectory: str | Sequence[str] | None = None,
        frames: slice | Sequence[int] | int | None = None,
        density_tol: float = 5e-3,
        dataset: str | Sequence[str] | None = None,
        config_type: str | Sequence[str] | None = None,
        where: dict[str, str | Sequence[str]] | None = None,
    ) -> tuple[str, np.ndarray]:
        """The collection and the indices of its snapshots at ``density`` (g/cm³: one or several,
        each within ``density_tol``, or a range ``slice(low, high)``, both ends included, either
        open), of ``trajectory``, ``dataset`` and ``config_type`` (each one or several names or
        shell patterns, see :func:`label_mask`), of ``frames`` (an index, a list or a slice of
        frame indices within their trajectories), and whose other string labels match ``where``
        (``{"process": "hold_5000K"}``: any string column the source frames carried)."""
        if collection is None:
            if len(self.collections) != 1:
                raise ValueError(f"the store holds collections {self.collections}; pass collection=... to choose one")
            collection = self.collections[0]
        require("density_tol", density_tol, {"low": 0}, "g/cm³")
        mask = np.ones(self.n_snapshots(collection), dtype=bool)
        if isinstance(density, slice):
            values = self.column(collection, "density")
            mask &= (values >= (-np.inf if density.start is None else density.start)) & (
                values <= (np.inf if density.stop is None else density.stop)
            )
        elif density is not None:
            wanted = np.atleast_1d(np.asarray(density, dtype=float))
            values = self.column(collection, "density")
            mask &= np.any(np.abs(values[:, None] - wanted[None, :]) <= density_tol, axis=1)
        labels = {"trajectory": trajectory, "dataset": dataset, "config_type": config_type, **(where or {})}
        labels = {k: v for k, v in labels.items() if v is not None}
        known = self.frame_labels(collection) if labels else []
        unknown = sorted(set(labels) - set(known))
        if unknown:
            raise ValueError(f"{collection} has no string label {unknown}; its labels are {known}")
        for key, wanted_s in labels.items():
            mask &= self.key_mask(collection, key, wanted_s)
        if frames is not None:
            values = self.column(collection, "frame")
            if isinstance(frames, slice):
                lo = -np.inf if frames.start is None else frames.start
                hi = np.inf if frames.stop is None else frames.stop
                mask &= (values >= lo) & (values < hi)
            else:
                mask &= np.isin(values, np.atleast_1d(frames))
        return collection, np.flatnonzero(mask)

    def records(self, collection: str, group: str, shard: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The ragged output of one shard of a descriptor variant (rows: row within the shard,
        then the descriptor's columns), and its attributes."""
        path = f"{collection}/{group}/{RECORDS}/{records_name(shard)}"
        try:
            arr = self._root[path]
        except KeyError:
            return np.empty((0, 0)), {}
        return arr[...], dict(arr.attrs)

    def row_records(self, collection: str, group: str, rows: slice) -> list[np.ndarray]:
        """The ragged output of each snapshot of ``rows``, without the row column; a shard's
        records are sorted by row, so each snapshot's are one block."""
        size = self.shard_size(collection, group)
        out = []
        for shard in range(rows.start // size, -(-rows.stop // size)):
            lo, hi = max(rows.start, shard * size), min(rows.stop, (shard + 1) * size)
            records, _ = self.records(collection, group, shard)
            within = np.arange(lo, hi + 1) - shard * size
            bounds = np.searchsorted(records[:, 0], within) if records.size else np.zeros(len(within), dtype=int)
            out += [records[a:b, 1:] for a, b in zip(bounds, bounds[1:])]
        return out

    def diagram(self, collection: str, snapshot: int, degree: int = 1, key: str = "") -> np.ndarray:
        """The stored persistence diagram of one snapshot: ``(birth, death)`` rows, Å² (squared
        radii; ``death = inf`` for classes never killed, or alive at a truncated filtration's end).

        ``key`` (a prefix of the provenance key) chooses the PH variant when there are several.
        Raises ValueError when there is none, or the snapshot has no diagram.
        """
        variants = {
            g: p
            for g, p in self.descriptor_groups(collection).items()
            if p["descriptor"] == "ph" and p["key"].startswith(key)
        }
        if len(variants) != 1:
            keys = [p["key"] for p in variants.values()]
            raise ValueError(
                f"{collection} has {len(variants) or 'no'} PH variants{' with key ' + key if key else ''}"
                + (f"; choose one by key: {keys}" if keys else "; run `phstore featurize ph`")
            )
        (group,) = variants
        if not 0 <= snapshot < self.n_snapshots(collection):
            raise ValueError(f"{collection} has no snapshot {snapshot} (it holds {self.n_snapshots(collection)})")
        state = self.read_rows(collection, group, slice(snapshot, snapshot + 1), ["status", "error"])
        if state["status"][0] != DONE:
            reason = state["error"][0] or "pending: run `phstore featurize ph`"
            raise ValueError(f"{collection} snapshot {snapshot} has no {group} diagram: {reason}")
        (records,) = self.row_records(collection, group, slice(snapshot, snapshot + 1))
        return records[records[:, 0] == degree][:, 1:]

    @property
    def rejected(self) -> list[dict[str, Any]]:
        """Frames that ingest refused: ``{"source", "index", "reason"}`` each (the root arrays
        :data:`REJECTED`; stores written before kept them in the root attribute ``rejected``)."""
        out = list(self._root.attrs.get("rejected", []))
        arrays = dict(self._root.arrays())
        if REJECTED[0] in arrays:
            columns = [arrays[name][...] for name in REJECTED]
            out += [{"source": str(s), "index": int(i), "reason": str(r)} for s, i, r in zip(*columns)]
        return out

    def table(self, collection: str) -> pd.DataFrame:
        """The frames table's one-value-per-snapshot columns (keys, energies, sources) as a
        pandas DataFrame, one row per snapshot (positions and cells are left out)."""
        names = [c for c, column in FRAME_COLUMNS.items() if not column.dims]
        columns = self.read_rows(collection, FRAMES, slice(0, self.n_snapshots(collection)), names)
        return pd.DataFrame(columns).rename_axis(SNAPSHOT)

    def __repr__(self) -> str:
        held = "; ".join(f"{c}: {self.n_snapshots(c)} snapshots" for c in self.collections) or "empty"
        return f"<FeatureStore {str(self.path)!r} mode={self.mode!r} chunk_size={self.chunk_size}: {held}>"

    def _repr_html_(self) -> str:
        """A table of collections and their descriptor variants (shown by Jupyter)."""
        rows = []
        for coll, entry in self.info()["collections"].items():
            groups = ", ".join(
                f"{html.escape(g)} ({d['done']} done, {d['failed']} failed, {d['pending']} pending)"
                for g, d in entry["descriptors"].items()
            )
            rows.append(
                f"<tr><td>{html.escape(coll)}</td><td>{entry['n_snapshots']}</td><td>{entry['natoms']}</td>"
                f"<td>{groups or '—'}</td></tr>"
            )
        return (
            f"<b>FeatureStore</b> {html.escape(str(self.path))} (chunk size {self.chunk_size})<table>"
            "<tr><th>collection</th><th>snapshots</th><th>atoms</th><th>descriptors</th></tr>"
            + "".join(rows)
            + "</table>"
        )

    def info(self) -> dict[str, Any]:
        """A summary: collections, snapshot counts, densities, descriptors with their status counts."""
        out: dict[str, Any] = {"path": str(self.path), "chunk_size": self.chunk_size, "collections": {}}
        for coll in self.collections:
            n = self.n_snapshots(coll)
            columns = self.read_rows(coll, FRAMES, slice(0, n), ["density", "trajectory"])
            entry: dict[str, Any] = {
                "n_snapshots": n,
                "natoms": int(self.collection_attrs(coll).get("natoms", 0)),
                "densities": np.unique(np.round(columns["density"], 4)).tolist(),
                "trajectories": len(pd.unique(columns["trajectory"])),
                "descriptors": {},
            }
            for group, prov in self.descriptor_groups(coll).items():
                status = self.status(coll, group)
                entry["descriptors"][group] = {
                    "descriptor": prov["descriptor"],
                    "params": prov["params"],
                    "versions": prov["versions"],
                    "done": int((status == DONE).sum()),
                    "failed": int((status == FAILED).sum()),
                    "pending": int((status == PENDING).sum()),
                }
            out["collections"][coll] = entry
        rejected = self.rejected
        out["rejected"] = len(rejected)
        kinds: dict[str, int] = {}
        for r in rejected:  # "unparseable: ...", "bad label: ...", "missing energy (...)": the kind before ':'
            kind = r["reason"].split(":")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        out["rejected_reasons"] = dict(sorted(kinds.items(), key=lambda kv: -kv[1]))
        return out

    # ------------------------------------------------------------------ writing
    @contextmanager
    def writer(self, operation: str) -> Iterator[None]:
        """Hold the store's writer lock while ``operation`` (e.g. ``"featurize ph-…"``) runs.

        One coordinating process writes a store at a time (its Dask tasks write on its behalf);
        a second one gets :class:`StoreLocked` naming the holder (the root attribute ``writer``).
        The lock is an ``flock`` on the store's directory, so the kernel releases it when the
        holder dies: a killed run never leaves a stale lock, and no file foreign to Zarr lies in
        the store. Re-entrant within one process. When the outermost writer ends, the store's
        consolidated metadata is rewritten, so plain ``xr.open_zarr(path, group=...)`` and
        ``xr.open_datatree(path, engine="zarr")`` open it quickly and without warnings (phstore
        itself never reads it: it could be stale while a writer runs).

        Every writing call of this class needs the lock, held by this process or given by
        ``writer=`` (:attr:`writer_token`, a new one each time the lock is taken), so tasks of a
        writer that lost the lock (it died, and another took it) cannot write any more.
        """
        if self.mode == "r":
            raise StoreError(f"{self.path} is open read-only; open it with mode='r+' to write")
        path = self.path.resolve()
        if path in _held:
            self.writer_token = self.writer_info().get("token")
            _held[path] += 1
            try:
                yield
            finally:
                _held[path] -= 1
                self.writer_token = None
            return
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                h = self.writer_info()
                raise StoreLocked(
                    f"{self.path} is being written by `{h.get('operation', '?')}` (pid {h.get('pid', '?')} on "
                    f"{h.get('host', '?')} since {h.get('since', '?')}); wait for it to finish and run this again"
                ) from None
            self.writer_token = uuid.uuid4().hex
            self._root.attrs["writer"] = {
                "token": self.writer_token,
                "operation": operation,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            _held[path] = 1
            try:
                if self._root.attrs.get("layout", 1) < LAYOUT:
                    self._upgrade()
                yield
            finally:
                del _held[path]
                self.writer_token = None
                consolidate(path)
        finally:
            os.close(fd)  # releases the lock

    def writer_info(self) -> dict[str, Any]:
        """Who took the writer lock last (``operation``, ``pid``, ``host``, ``since``, ``token``),
        read afresh; whether it still holds it is what :meth:`writer` finds out."""
        return dict(_open_root(self.path, "r").attrs.get("writer", {}))

    def _upgrade(self) -> None:
        """Bring a store of an older layout to :data:`LAYOUT` (once, under the writer lock):
        records arrays without dimension names are rewritten with them, status and error arrays
        chunked by the snapshot chunk are rewritten by :data:`TABLE_ENCODING`, the old lock file
        goes. Frames tables and groups written unsharded (layouts 1-3) stay so: they read and
        grow as they are, their shard being their chunk; groups made from now on are sharded."""
        (self.path / LOCK).unlink(missing_ok=True)
        for collection in self.collections:
            for group in self.descriptor_groups(collection):
                g = self._root[f"{collection}/{group}"]
                for name in ("status", "error"):
                    if g[name].chunks[0] < TABLE_ROWS:
                        self._rechunk(g[name])
                records = g.get(RECORDS)
                if records is None:
                    continue
                for name, arr in list(records.arrays()):
                    if not arr.metadata.dimension_names:
                        self.write_records(collection, group, int(name[1:]), arr[...], dict(arr.attrs))
        self._root.attrs["layout"] = LAYOUT
        log.info("upgraded %s to store layout %d", self.path, LAYOUT)

    def _rechunk(self, arr: zarr.Array) -> None:
        """Rewrite a 1-D snapshot array in chunks and shards of :data:`TABLE_ENCODING` (a store
        upgrade); one that does not decode is left as it is, for verify to report and repair to mend."""
        try:
            values = arr[...]
        except Exception as exc:
            log.warning("%s not rechunked: %s", arr.path, exc)
            return
        self._root.create_array(
            arr.path,
            shape=arr.shape,
            dtype=arr.dtype,
            **TABLE_ENCODING,
            fill_value=arr.metadata.fill_value,
            dimension_names=arr.metadata.dimension_names,
            attributes=dict(arr.attrs),
            compressors=arr.compressors,
            overwrite=True,
        )[...] = values

    def _require_writable(self) -> None:
        """Refuse a write without the writer lock (see :meth:`writer`)."""
        if self.mode == "r":
            raise StoreError(f"{self.path} is open read-only; open it with mode='r+' to write")
        if self.writer_token is None:
            if self.path.resolve() in _held:
                return
            raise StoreError(
                f"{self.path} is written only under its writer lock: put the writing calls in "
                "`with store.writer('what you do'):`, or pass a task the holder's token (FeatureStore(path, "
                "'r+', writer=store.writer_token))"
            )
        holder = self.writer_info()
        if holder.get("token") != self.writer_token:
            raise StoreLocked(
                f"{self.path}: the writer this task wrote for no longer holds the lock (now "
                f"`{holder.get('operation')}`, pid {holder.get('pid')} on {holder.get('host')}); its work is left to it"
            )

    def append_frames(self, collection: str, rows: Sequence[dict[str, Any]], attrs: dict[str, Any]) -> None:
        """Append snapshot ``rows`` (see :func:`frames_table`) to ``collection`` (created with
        ``attrs`` when new), then commit them."""
        self._require_writable()
        n_new = len(rows)
        if n_new == 0:
            return
        frames = frames_table(rows)
        if collection not in self.collections:
            self._root.create_group(collection, attributes={**attrs, "n_snapshots": 0})
        n = self.n_snapshots(collection)
        group = f"{collection}/{FRAMES}"
        exists = FRAMES in dict(self._root[collection].groups())
        if exists:
            self._truncate(group, n)
            self._add_columns(collection, n)
        names = {k: self._names(collection, k) for k in CODED}
        known = {k: len(v) for k, v in names.items()}
        frames = frames.assign(
            {code_name(k): (SNAPSHOT, encode(frames[k].values, names[k]), CODE_ATTRS) for k in CODED}
        )
        encoding = {v: self._frames_encoding(frames[v]) for v in frames.data_vars}
        if not exists:
            frames.to_zarr(
                str(self.path),
                group=group,
                mode="w",
                zarr_format=3,
                consolidated=False,
                encoding=encoding,
            )
        else:
            frames.to_zarr(str(self.path), group=group, append_dim=SNAPSHOT, consolidated=False)
        for k in CODED:  # new names, before the commit: names of uncommitted rows are harmless
            if len(names[k]) > known[k]:
                self._root[f"{group}/{code_name(k)}"].attrs["names"] = names[k]
        self._root[collection].attrs["n_snapshots"] = n + n_new

    def _names(self, collection: str, key: str) -> list[str]:
        """The names the codes of string key ``key`` index (empty before the frames table is made)."""
        try:
            return list(self._root[f"{collection}/{FRAMES}/{code_name(key)}"].attrs.get("names", []))
        except KeyError:
            return []

    def _frames_encoding(self, column: xr.DataArray) -> dict[str, tuple[int, ...]]:
        """Chunks and shards of a frames column: 1-D numbers by :data:`NUMBER_ENCODING`, 1-D
        strings by :data:`TABLE_ENCODING`, the others by the chunk size, in shards of up to
        :data:`MAX_SHARD_CHUNKS` chunks (one process writes the frames table, so any shard size
        is safe)."""
        if column.ndim == 1:
            return NUMBER_ENCODING if column.dtype.kind in "biuf" else TABLE_ENCODING
        tail = column.shape[1:]
        row_bytes = int(np.prod(tail)) * column.dtype.itemsize
        return snapshot_encoding(self.chunk_size, shard_snapshots(self.chunk_size, row_bytes), tail)

    def _add_columns(self, collection: str, n: int) -> None:
        """Give the ``n`` rows of a frames table made before some of :data:`FRAME_COLUMNS` those
        columns (:func:`missing_column`), and before the codes of :data:`CODED` their codes (made
        from the strings, once), so new rows can be appended."""
        group = f"{collection}/{FRAMES}"
        arrays = dict(self._root[group].arrays())
        missing = [c for c in FRAME_COLUMNS if c not in arrays]
        uncoded = [k for k in CODED if code_name(k) not in arrays]
        if not missing and not uncoded:
            return
        natoms = int(self.collection_attrs(collection)["natoms"])
        columns = {
            c: ((SNAPSHOT, *FRAME_COLUMNS[c].dims), missing_column(c, n, natoms), column_attrs(FRAME_COLUMNS[c]))
            for c in missing
        }
        names: dict[str, list[str]] = {k: [] for k in uncoded}
        strings = self.read_rows(collection, FRAMES, slice(0, n), uncoded) if uncoded else {}
        columns |= {code_name(k): (SNAPSHOT, encode(strings[k], names[k]), CODE_ATTRS) for k in uncoded}
        new = xr.Dataset(columns)
        new.to_zarr(
            str(self.path),
            group=group,
            mode="a",
            consolidated=False,
            encoding={c: self._frames_encoding(new[c]) for c in new.data_vars},
        )
        for k in uncoded:
            self._root[f"{group}/{code_name(k)}"].attrs["names"] = names[k]

    def _truncate(self, group: str, n: int) -> None:
        """Drop rows past ``n`` (left by an interrupted append) from every array of ``group``."""
        for _, arr in self._root[group].arrays():
            if arr.metadata.dimension_names and arr.metadata.dimension_names[0] == SNAPSHOT and arr.shape[0] > n:
                arr.resize((n, *arr.shape[1:]))

    def add_rejected(self, rejected: Iterable[dict[str, Any]]) -> None:
        """Record refused frames (deduplicated by source, index and reason) in the root arrays
        :data:`REJECTED`, one row each; a list an older store holds in its attributes moves there."""
        self._require_writable()
        old = list(self._root.attrs.get("rejected", []))
        seen = {(r["source"], r["index"], r["reason"]) for r in self.rejected}
        new = []
        for r in rejected:
            key = (r["source"], int(r["index"]), r["reason"])
            if key not in seen:
                new.append(key)
                seen.add(key)
        rows = [(r["source"], int(r["index"]), r["reason"]) for r in old] + new
        if not rows:
            return
        arrays = dict(self._root.arrays())
        for name, column, dtype in zip(REJECTED, zip(*rows), (str, "int64", str)):
            if name in arrays:
                arr = arrays[name]
            else:
                arr = self._root.create_array(
                    name, shape=(0,), **TABLE_ENCODING, dtype=dtype, dimension_names=("rejected",)
                )
            n = arr.shape[0]
            arr.resize((n + len(rows),))
            arr[n:] = np.array(column, dtype=arr.dtype)
        if old:
            del self._root.attrs["rejected"]

    def ensure_descriptor(
        self,
        collection: str,
        group: str,
        provenance: dict[str, Any],
        variables: dict[str, VariableSpec],
        coords: Coordinates | None = None,
    ) -> None:
        """Create the descriptor group (all rows pending, with the coordinates ``coords`` of its
        own dimensions) or extend it to the committed rows.

        A new group's values are chunked by the store's chunk size and written in shards of
        :func:`shard_snapshots` snapshots (its attribute ``shard_size``), fixed when it is made:
        of the snapshots there are then, so that a small store still gives every worker a task.

        Raises :class:`StoreError` if the group exists with a different provenance.
        """
        self._require_writable()
        n = self.n_snapshots(collection)
        coll = self.zarr_group(collection)
        if group in dict(coll.groups()):
            stored = dict(coll[group].attrs.get("provenance", {}))
            if stored.get("key") != provenance["key"]:
                raise StoreError(
                    f"{collection}/{group} holds features with provenance key {stored.get('key')}, "
                    f"not {provenance['key']}; the store is inconsistent, run `phstore info`"
                )
            self._extend(f"{collection}/{group}", n)
            return
        cs = self.chunk_size
        row_bytes = sum(int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize for spec in variables.values())
        shard = shard_snapshots(cs, row_bytes, -(-n // cs))
        data = {  # committed by the writer alone, for many tasks' shards: chunked like the frames' columns
            "status": ((SNAPSHOT,), da.full((n,), PENDING, dtype="int8", chunks=TABLE_ROWS)),
            "error": ((SNAPSHOT,), np.full(n, "", dtype=object)),
        }
        encoding = {"status": TABLE_ENCODING, "error": TABLE_ENCODING}
        for name, spec in variables.items():
            data[name] = (
                (SNAPSHOT, *spec.dims),
                da.full((n, *spec.shape), spec.fill, dtype=spec.dtype, chunks=(shard, *spec.shape)),
                spec.attrs(),
            )
            encoding[name] = snapshot_encoding(cs, shard, spec.shape) | (
                {"compressors": [DENSE_CODEC]} if spec.dense else {}
            )
        coordinates = {dim: ((dim,), values, attrs) for dim, (values, attrs) in (coords or {}).items()}
        template = xr.Dataset(data, coords=coordinates, attrs={"provenance": provenance, "shard_size": shard})
        self._shard_sizes.pop((collection, group), None)  # a group made anew (its directory removed)
        template.to_zarr(
            str(self.path),
            group=f"{collection}/{group}",
            mode="w",
            zarr_format=3,
            consolidated=False,
            compute=False,
            encoding=encoding,
        )

    def _extend(self, group: str, n: int) -> None:
        """Grow every snapshot array of ``group`` to ``n`` rows of fill values."""
        for _, arr in self._root[group].arrays():
            if arr.metadata.dimension_names and arr.metadata.dimension_names[0] == SNAPSHOT:
                old = arr.shape[0]
                if old < n:
                    arr.resize((n, *arr.shape[1:]))
                    step = outer_step(arr)
                    for lo in range(old, n, step):  # chunk by chunk: bounded memory
                        hi = min(n, (lo // step + 1) * step)
                        arr[lo:hi] = np.full((hi - lo, *arr.shape[1:]), arr.metadata.fill_value, dtype=arr.dtype)

    def read_rows(
        self, collection: str, group: str, rows: slice | np.ndarray, names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Plain numpy values of ``names`` in the snapshot region ``rows`` of a group (a slice,
        or ascending indices: only the chunks that hold them are read).

        Reads Zarr directly (no xarray/dask graph): the hot path of a featurize task.
        """
        out = {}
        for name in names:
            if group == FRAMES and name in CODED:
                coded = self._coded(collection, name, rows)
                if coded is not None:
                    out[name] = coded[1][coded[0]]
                    continue
            path = f"{collection}/{group}/{name}"
            if group == FRAMES and name in FRAME_COLUMNS and path not in self._root:  # a store made before it
                count = (
                    len(range(*rows.indices(self.n_snapshots(collection)))) if isinstance(rows, slice) else len(rows)
                )
                out[name] = missing_column(name, count, int(self.collection_attrs(collection)["natoms"]))
                continue
            arr = self._root[path]
            values = arr[rows] if isinstance(rows, slice) else arr.get_orthogonal_selection(np.asarray(rows, np.int64))
            out[name] = as_objects(values)
        return out

    def _coded(self, collection: str, key: str, rows: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The codes of string key ``key`` of ``rows`` and the names they index (``names[codes]``
        are the strings), or None where they cannot say (a store made before them, a code lost:
        the strings are read instead)."""
        try:
            arr = self._root[f"{collection}/{FRAMES}/{code_name(key)}"]
        except KeyError:
            return None
        codes = arr[rows] if isinstance(rows, slice) else arr.get_orthogonal_selection(np.asarray(rows, np.int64))
        names = np.array(["", *arr.attrs.get("names", [])], dtype=object)
        if len(codes) and not (0 < codes.min() and codes.max() < len(names)):
            return None
        return codes, names

    def key_mask(self, collection: str, key: str, wanted: str | Sequence[str]) -> np.ndarray:
        """Where string key ``key`` (e.g. ``trajectory``) of each committed snapshot matches
        ``wanted`` (see :func:`label_mask`): each name is matched once, the rows by their codes."""
        coded = self._coded(collection, key, slice(0, self.n_snapshots(collection))) if key in CODED else None
        if coded is None:
            return label_mask(self.column(collection, key), wanted)
        codes, names = coded
        return np.concatenate([[False], label_mask(names[1:], wanted)])[codes]

    def atoms(self, collection: str, rows: slice) -> list[Atoms]:
        """The snapshots in the region ``rows`` as periodic ``ase.Atoms`` (positions in Å)."""
        f = self.read_rows(collection, FRAMES, rows, ["positions", "cell", "numbers"])
        return [
            Atoms(numbers=z, positions=p, cell=c, pbc=True) for p, c, z in zip(f["positions"], f["cell"], f["numbers"])
        ]

    def commit_rows(
        self,
        collection: str,
        group: str,
        rows: slice,
        values: dict[str, np.ndarray],
        status: np.ndarray,
        errors: np.ndarray | None = None,
    ) -> None:
        """Write ``values`` to the snapshot region ``rows`` of a descriptor group
        (:meth:`write_rows`), then commit the rows' ``status`` and error messages (``errors``;
        none when not given; :meth:`commit_status`): a writer killed before the end leaves the
        rows' old status, never a status without its values."""
        self.write_rows(collection, group, rows, values)
        self.commit_status(collection, group, np.arange(*rows.indices(self.n_snapshots(collection))), status, errors)

    def write_rows(self, collection: str, group: str, rows: slice, values: dict[str, np.ndarray]) -> None:
        """Write ``values`` (not ``status`` or ``error``) to the snapshot region ``rows`` of a
        descriptor group: what a featurize task writes, its region one chunk of its own."""
        self._require_writable()
        if {"error", "status"} & set(values):
            raise ValueError("status and errors are committed by commit_status (or commit_rows), not written as values")
        for name, value in values.items():
            self._root[f"{collection}/{group}/{name}"][rows] = value

    def commit_status(
        self, collection: str, group: str, rows: np.ndarray, status: np.ndarray, errors: np.ndarray | None = None
    ) -> None:
        """Commit the ``status`` and error messages (``errors``; none when not given) of the
        snapshot rows ``rows`` (indices, e.g. of several finished chunks) of a descriptor group:
        one read and write of each status chunk they touch. Only the writer lock's holder
        commits (status and error are chunked by ``TABLE_ROWS``, shared by many tasks)."""
        self._require_writable()
        rows = np.asarray(rows, dtype=np.int64)
        status = np.asarray(status, dtype=np.int8)
        errors = np.full(len(rows), "", dtype=object) if errors is None else np.asarray(errors, dtype=object)
        if not len(rows) == len(status) == len(errors):
            raise ValueError(
                f"{len(rows)} rows (of {self.n_snapshots(collection)} committed snapshots) but {len(status)} "
                f"status values and {len(errors)} errors: give one of each per row"
            )
        for name, new in (("error", errors), ("status", status)):  # status last: the commit marker
            self._patch(self._root[f"{collection}/{group}/{name}"], rows, new)

    def reset_shards(self, collection: str, group: str, shards: Sequence[int]) -> None:
        """Make ``shards`` of a descriptor group pending again, whatever they held (repair): the
        files of the status (first), the error messages and every value, and the shard's
        records, are removed, so the shards read as pending fill values and the next featurize
        recomputes them. Nothing of a shard is read, so a shard that does not decode is reset too."""
        self._require_writable()
        g = self._root[f"{collection}/{group}"]
        arrays = sorted(
            ((k, a) for k, a in g.arrays() if a.metadata.dimension_names and a.metadata.dimension_names[0] == SNAPSHOT),
            key=lambda item: item[0] != "status",
        )
        records = g.get(RECORDS)
        for shard in shards:
            region = self.shard_rows(collection, group, shard)
            for _, arr in arrays:
                step = outer_step(arr)
                if region.start % step == 0 and (region.stop % step == 0 or region.stop >= arr.shape[0]):
                    for c in range(region.start // step, -(-region.stop // step)):  # whole files: drop them
                        self._drop_chunk(arr, c)
                    continue
                # a wider file (status, error: TABLE_ROWS) holding other rows too: rewrite the region
                rows = np.arange(region.start, region.stop)
                self._patch(arr, rows, np.full(len(rows), arr.metadata.fill_value, dtype=arr.dtype))
            if records is not None and records_name(shard) in records:
                del records[records_name(shard)]

    def rewrite_frames(self, collection: str, rows: dict[int, dict[str, Any]]) -> None:
        """Write columns of committed frames rows back in place (``{row: {column: value}}``;
        repair: frames read again from their sources), and the rows' codes of :data:`CODED` again
        from their strings. A chunk that does not decode is replaced:
        its rows not given read as the fill value (they were lost already)."""
        self._require_writable()
        group = self._root[f"{collection}/{FRAMES}"]
        for name in sorted({c for values in rows.values() for c in values}):
            given = sorted(r for r, values in rows.items() if name in values)
            self._patch(group[name], np.array(given), np.array([rows[r][name] for r in given]))
        given = np.array(sorted(rows))
        for k in CODED:  # the codes of the rows again, from their strings
            if code_name(k) in group:
                names = self._names(collection, k)
                known = len(names)
                self._patch(
                    group[code_name(k)], given, encode(as_objects(group[k].get_orthogonal_selection(given)), names)
                )
                if len(names) > known:
                    group[code_name(k)].attrs["names"] = names

    def _patch(self, arr: zarr.Array, rows: np.ndarray, values: np.ndarray) -> None:
        """Write ``values`` at the snapshot ``rows`` (indices) of ``arr``: one read and one write
        of each file (shard or chunk) they touch. A file that does not decode is read chunk by
        chunk (what decodes is kept, the rest is the fill value: lost already) and dropped
        before it is written, so the write does not read it."""
        step = outer_step(arr)
        chunks = rows // step
        for c in np.unique(chunks):
            lo, hi = int(c) * step, min(arr.shape[0], (int(c) + 1) * step)
            try:
                current = as_objects(arr[lo:hi])
            except Exception:  # keep the chunks of the file that still decode
                current = np.concatenate(
                    [self._salvage(arr, a, min(hi, a + arr.chunks[0])) for a in range(lo, hi, arr.chunks[0])]
                )
                self._drop_chunk(arr, int(c))
            mine = chunks == c
            current[rows[mine] - lo] = values[mine]
            arr[lo:hi] = current

    @staticmethod
    def _salvage(arr: zarr.Array, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` (within one chunk) of ``arr``, or its fill value when they do not decode."""
        try:
            return as_objects(arr[lo:hi])
        except Exception:
            return np.full((hi - lo, *arr.shape[1:]), arr.metadata.fill_value, dtype=arr.dtype)

    def _drop_chunk(self, arr: zarr.Array, chunk: int) -> None:
        """Remove file ``chunk`` (along the snapshots: a shard of a sharded array) of ``arr``: its
        rows read as the fill value."""
        key = arr.metadata.encode_chunk_key((chunk, *([0] * (arr.ndim - 1))))
        (self.path / arr.path / key).unlink(missing_ok=True)

    def group_attrs(self, collection: str, group: str) -> dict[str, Any]:
        """A group's attributes (its provenance and what :meth:`annotate` added)."""
        return dict(self._root[f"{collection}/{group}"].attrs)

    def annotate(self, collection: str, group: str, attrs: dict[str, Any]) -> None:
        """Add JSON-ready ``attrs`` to a group's attributes (results that have no snapshot axis)."""
        self._require_writable()
        self._root[f"{collection}/{group}"].attrs.update(attrs)

    def write_records(
        self, collection: str, group: str, shard: int, records: np.ndarray, attrs: dict[str, Any]
    ) -> None:
        """Replace the ragged output of one shard (written whole by the task that owns the shard)."""
        self._require_writable()
        name = records_name(shard)
        self._root.create_array(
            f"{collection}/{group}/{RECORDS}/{name}",
            dimension_names=(f"{name}_row", "column"),  # one length per shard: a dimension of its own
            shape=records.shape,
            dtype=records.dtype,
            chunks=tuple(max(1, d) for d in records.shape),
            overwrite=True,
            attributes=attrs,
            compressors=[RECORDS_CODEC],
        )[...] = records


def open_store(path: str | Path) -> FeatureStore:
    """Open a feature store for reading (lazy; see :meth:`FeatureStore.sel`)."""
    return FeatureStore(path, mode="r")
