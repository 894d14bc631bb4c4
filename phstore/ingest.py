"""Read snapshots from anything ASE reads, validate them, and append them to the store.

Every snapshot is keyed by **density** (g/cm³; the file's ``density`` key, else N·m/V),
**trajectory** (the source file's path relative to the directory given, without suffix, e.g.
``216atom_amorphous/run1``) and **frame** (index within the file). Each snapshot also records its
**dataset**: the energies of one dataset come from one method (code, functional) and may be
trained on together; by default each source given to ingest is its own dataset. A bad frame is recorded as
rejected with its file and index and the rest goes on; a frame whose content hash (numbers,
positions, cell, energy) is already stored is skipped, so re-ingesting adds no duplicates.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols
from ase.io.formats import filetype
from matscipy.neighbours import neighbour_list
from tqdm.auto import tqdm

from phstore.errors import PhstoreError
from phstore.params import require
from phstore.store import TARGET, FeatureStore, content_hash
from phstore.units import density_gcc

if TYPE_CHECKING:
    from distributed import Client

#: File names ingest picks up when given a directory.
SUFFIXES = (".xyz", ".extxyz", ".db", ".traj", ".dump", ".lammpstrj", ".vasp", ".xml")
NAMES = ("OUTCAR", "vasprun.xml", "XDATCAR")


class SourceError(PhstoreError, FileNotFoundError):
    """None of the sources given to ingest exists or holds a readable file."""


class SourceProblem(PhstoreError, ValueError):
    """A source file ingest cannot read as it is, for a reason the user can fix (reported as it is)."""


@dataclass
class IngestReport:
    """Counts of an ingest run, the frames it refused, the sources it did not find, the source
    files it skipped because their content was ingested before (``known``), and how many of the
    frames added have no energy (``unlabelled``)."""

    added: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    known: int = 0
    unlabelled: int = 0

    @property
    def n_added(self) -> int:
        return sum(self.added.values())


def find_sources(paths: Iterable[str | Path]) -> list[tuple[Path, Path, str]]:
    """``(file, root, name)`` triples: files as given, directories searched recursively. ``name``
    is the default dataset of the file's frames, one per file: its stem, or for a file found in a
    directory the directory's name and the file's path in it without suffix (``md/run1``)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and (f.suffix in SUFFIXES or f.name in NAMES))
            out += [(f, p, str(p.resolve().name / f.relative_to(p).with_suffix(""))) for f in files]
        else:
            out.append((p, p.parent, p.stem))
    return out


def source_digest(path: Path) -> str:
    """SHA-256 of a file's content (32 hex digits): its identity as a source, wherever it lies."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()[:32]


def existing_sources(paths: Iterable[str | Path]) -> tuple[list[tuple[Path, Path, str]], list[str]]:
    """:func:`find_sources` of ``paths`` and the paths that do not exist; a SourceError when
    nothing is left to read."""
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    files = find_sources(p for p in paths if p.exists())
    if not files:
        given = ", ".join(map(str, paths)) or "none"
        raise SourceError(
            f"nothing to ingest: no ASE-readable file in the sources given ({given})"
            + (f"; no such file or directory: {', '.join(missing)}" if missing else "")
        )
    return files, missing


def _split_xyz(text: str) -> Iterator[str]:
    """Split (extended) XYZ text into frame blocks without parsing them, so one bad block
    costs only that frame. A truncated last block is yielded as it is (and fails to parse)."""
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except ValueError:
            n = -1
        if n < 0:
            yield "".join(lines[i:])  # unparseable header: the rest is one bad block
            return
        yield "".join(lines[i : i + n + 2])
        i += n + 2


#: ASE's formats of LAMMPS dumps: atom types, no energies.
LAMMPS_DUMPS = ("lammps-dump-text", "lammps-dump-binary")


def parse_species(text: str) -> dict[int, str]:
    """``"1=C,2=H"`` as ``{1: "C", 2: "H"}``: the species of LAMMPS atom types."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, _, symbol = item.partition("=")
        if not key.strip().isdigit() or symbol.strip() not in chemical_symbols[1:]:
            raise ValueError(f"species {item!r}: write atom type=element pairs such as 1=C,2=H")
        out[int(key)] = symbol.strip()
    return out


def _dump_columns(path: Path) -> list[str]:
    """The per-atom columns a LAMMPS text dump names in its first ``ITEM: ATOMS`` line."""
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("ITEM: ATOMS"):
                return line.split()[2:]
    return []


def _lammps_frames(path: Path, fmt: str, species: dict[int, str] | None) -> Iterator[Atoms]:
    """The frames of a LAMMPS dump with their species (the dump's ``element`` or ``mass`` column,
    else ``species``) and forces, and no energy (ASE's reader puts a placeholder 0 there)."""
    columns = _dump_columns(path) if fmt == "lammps-dump-text" else []
    named = "element" in columns or "mass" in columns
    if not named and not species:
        raise SourceProblem(
            "a LAMMPS dump names atom types, not species: give them with --species 1=C,2=H (species={1: 'C'}) "
            "or dump an element column"
        )
    types = [] if named or not species else [species.get(t, "X") for t in range(1, max(species) + 1)]
    for atoms in ase.io.iread(str(path), index=":", format=fmt, **({"specorder": types} if types else {})):
        results = atoms.calc.results if atoms.calc is not None else {}
        if "forces" in results:
            atoms.calc = SinglePointCalculator(atoms, forces=results["forces"])
        else:
            atoms.calc = None
        yield atoms


def read_frames(path: Path, species: dict[int, str] | None = None) -> Iterator[tuple[int, Atoms | Exception]]:
    """Yield ``(index, Atoms)`` or ``(index, exception)`` for each frame of ``path``
    (``species``: the element of each LAMMPS atom type, for dumps without an element column)."""
    if path.stat().st_size == 0:
        yield -1, ValueError("empty file")
        return
    try:
        fmt = filetype(str(path), guess=True)
    except Exception as exc:
        yield -1, exc
        return
    if fmt in ("xyz", "extxyz"):  # read as a stream, a block of frames at a time
        for start, end, first in xyz_blocks(path):
            yield from _xyz_frames(_read_range(path, start, end), first)
        return
    i = 0
    try:
        frames = _lammps_frames(path, fmt, species) if fmt in LAMMPS_DUMPS else ase.io.iread(str(path), ":", fmt)
        for atoms in frames:
            yield i, atoms
            i += 1
    except SourceProblem as exc:
        yield i, exc
    except Exception as exc:  # the reader cannot go on past a broken frame in these formats
        yield i, ValueError(f"unreadable from frame {i} on: {type(exc).__name__}: {exc}")


#: Atoms closer than this (Å) overlap: no real structure has them, and descriptors fail or mislead on them.
MIN_DISTANCE = 0.5


def check(atoms: Atoms, min_distance: float = MIN_DISTANCE) -> str | None:
    """Why a frame cannot be stored, or None if it can (``min_distance``: the closest two atoms
    may be, Å, through the periodic boundaries; 0 accepts overlapping atoms)."""
    if len(atoms) == 0:
        return "no atoms"
    if not np.isfinite(atoms.positions).all():
        return "non-finite (NaN/inf) coordinates"
    if not atoms.pbc.all():
        return f"not periodic in all three directions (pbc={atoms.pbc.tolist()})"
    if not np.isfinite(atoms.cell.array).all() or abs(atoms.cell.volume) < 1e-6:
        return "zero-volume or non-finite cell"
    if (atoms.numbers <= 0).any():
        return "unknown species (atomic number 0)"
    if np.isinf(energy_of(atoms)):
        return "infinite energy"
    if min_distance > 0:
        i, j, d = neighbour_list("ijd", atoms, min_distance)  # matscipy: ~150x ASE's on 64 atoms
        if len(d):
            k = int(np.argmin(d))
            return (
                f"overlapping atoms: {int(i[k])} and {int(j[k])} are {d[k]:.3f} Å apart, closer than "
                f"{min_distance} Å (min_distance=0, --min-distance 0, keeps such frames)"
            )
    return None


def _result(atoms: Atoms, name: str) -> np.ndarray | None:
    """A result its reader attached to the frame (its calculator's ``results``), or None. Read
    directly: ``atoms.get_potential_energy()`` would first compare the atoms with the
    calculator's copy, which costs more than the rest of a frame's ingest."""
    value = (getattr(atoms.calc, "results", None) or {}).get(name)
    return None if value is None else np.asarray(value, dtype=float)


def energy_of(atoms: Atoms) -> float:
    """The frame's total energy (eV), NaN when it has none (unlabelled MD)."""
    energy = _result(atoms, "energy")
    return np.nan if energy is None else float(energy)


def forces_of(atoms: Atoms) -> np.ndarray:
    """The frame's forces (eV/Å, one row per atom), NaN when it has none."""
    forces = _result(atoms, "forces")
    if forces is None:
        forces = np.asarray(atoms.arrays.get("forces", np.full((len(atoms), 3), np.nan)), dtype=float)
    return forces


def stress_of(atoms: Atoms) -> np.ndarray:
    """The frame's stress (eV/Å³, Voigt order xx, yy, zz, yz, xz, xy), from its calculator or
    its ``stress`` or ``virial`` label (stress = -virial / volume); NaN when it has none."""
    candidates = (
        (_result(atoms, "stress"), 1.0),
        (atoms.info.get("stress"), 1.0),
        (atoms.info.get("virial"), -1.0 / abs(atoms.cell.volume)),
    )
    for value, scale in candidates:
        value = np.asarray([] if value is None else value, dtype=float)
        if value.size == 9:
            value = value.reshape(3, 3)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        if value.size == 6:
            return value * scale
    return np.full(6, np.nan)


#: ``atoms.info`` entries ingest stores in columns of their own (or recomputes), not in ``labels``.
OWN_LABELS = {"density", "density_gcc", "temperature", "process", "config_type", "energy", "stress", "virial"}


def other_labels(info: dict[str, Any]) -> str:
    """The JSON of a frame's other labels: its ``atoms.info`` strings and numbers."""
    keep = {
        k: v.item() if isinstance(v, np.generic) else v
        for k, v in info.items()
        if k not in OWN_LABELS and isinstance(v, (str, int, float, bool, np.generic))
    }
    return json.dumps(keep, sort_keys=True, default=str)


def collection_name(atoms: Atoms) -> str:
    """Collection of a frame: its composition in Hill order, e.g. ``C216``."""
    return atoms.get_chemical_formula(mode="hill")


def _number(info: dict[str, Any], key: str, positive: bool = False) -> float | None:
    """The frame label ``key`` as a number (None when absent), or a ValueError naming it."""
    if key not in info:
        return None
    try:
        value = float(info[key])
    except (TypeError, ValueError):
        value = np.nan
    if not np.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{key}={printable(str(info[key]), 40)} is not a {'positive ' if positive else ''}number")
    return value


def printable(text: str, limit: int = 300) -> str:
    """``text`` as a report may echo it: non-printable characters escaped, at most ``limit`` long."""
    clean = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return clean if len(clean) <= limit else clean[:limit] + "…"


def snapshot_row(atoms: Atoms, path: Path, root: Path, index: int, dataset: str) -> dict[str, Any]:
    """The frames-table row of frame ``index`` of ``path`` (found under ``root``, of ``dataset``);
    atoms are sorted by atomic number so a collection has one layout. Raises ValueError, naming
    the label, when a label that must be a number is not one."""
    info = atoms.info
    energy = energy_of(atoms)
    density = _number(info, "density", positive=True)
    if density is None:
        density = _number(info, "density_gcc", positive=True)
    temperature = _number(info, "temperature")
    order = np.argsort(atoms.numbers, kind="stable")
    forces = forces_of(atoms)[order]
    stress = stress_of(atoms)
    atoms = atoms[order]  # (drops the calculator: its results are read above)
    return {
        "positions": atoms.positions,
        "cell": atoms.cell.array,
        "numbers": atoms.numbers.astype(np.int16),
        "energy": energy,
        TARGET: energy / len(atoms),
        "forces": forces,
        "stress": stress,
        "config_type": str(info.get("config_type", "")),
        "labels": other_labels(info),
        "density": density
        if density is not None
        else density_gcc(float(atoms.get_masses().sum()), abs(atoms.cell.volume)),
        "trajectory": str(path.relative_to(root).with_suffix("")),
        "frame": index,
        "process": str(info.get("process", "")),
        "temperature": np.nan if temperature is None else temperature,
        "dataset": dataset,
        "source": str(path),
        "source_index": index,
        "content_hash": content_hash(atoms.numbers, atoms.positions, atoms.cell.array, energy),
    }


#: Frames of an (extended) XYZ file that one ingest task parses (a large file becomes many tasks).
BLOCK_FRAMES = 1000


def xyz_blocks(path: Path, frames: int = BLOCK_FRAMES, buffer: int = 1 << 24) -> Iterator[tuple[int, int, int]]:
    """``(start, end, first)``: byte ranges of an (extended) XYZ file holding up to ``frames``
    frames each, and the index of each range's first frame. The file is read once, ``buffer``
    bytes at a time (memory stays bounded whatever its size): each frame's header line is
    parsed and its atom lines are counted, not parsed. From a header that is not a number on
    the rest is one range (its frames fail to parse where they are read)."""
    size = path.stat().st_size
    start, first, count = 0, 0, 0  # the range being filled: its start, first frame, frames in it
    offset, skip, carry = 0, 0, b""  # buf[0]'s offset in the file; newlines left in the current frame
    with open(path, "rb") as f:
        while True:
            data = f.read(buffer)
            buf = carry + data
            if not buf:
                break
            newlines = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10)
            pos, k = 0, 0  # the next unread line starts at pos; newlines[k] ends it
            if skip:
                if skip > len(newlines):
                    skip -= len(newlines)
                    offset, carry = offset + len(buf), b""
                    if not data:
                        break
                    continue
                pos, k, skip = int(newlines[skip - 1]) + 1, skip, 0
                count += 1
            while True:
                if count == frames:
                    yield start, offset + pos, first
                    start, first, count = offset + pos, first + count, 0
                if k >= len(newlines):  # the next line goes on in the next buffer
                    break
                line = buf[pos : newlines[k]]
                if not line.strip():  # blank lines between frames
                    pos, k = int(newlines[k]) + 1, k + 1
                    continue
                try:
                    natoms = int(line.split()[0])
                except ValueError:
                    natoms = -1
                if natoms < 0:
                    yield start, size, first
                    return
                if k + natoms + 1 < len(newlines):
                    pos, k = int(newlines[k + natoms + 1]) + 1, k + natoms + 2
                    count += 1
                else:
                    skip = k + natoms + 2 - len(newlines)
                    pos = len(buf)
                    break
            carry = buf[pos:] if not skip else b""
            offset += pos if not skip else len(buf)
            if not data:
                break
    if size > start:
        yield start, size, first


def _xyz_frames(text: str, first: int) -> Iterator[tuple[int, Atoms | Exception]]:
    """``(index, Atoms or exception)`` of the frames of (extended) XYZ ``text``, the first
    having index ``first``."""
    for i, block in enumerate(_split_xyz(text)):
        try:
            yield first + i, ase.io.read(io.StringIO(block), format="extxyz")
        except KeyError as exc:  # ASE's symbol lookup
            yield first + i, ValueError(f"unknown species {exc}")
        except Exception as exc:
            yield first + i, exc


def _read_range(path: Path, start: int, end: int) -> str:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start).decode(errors="replace")


@dataclass(frozen=True)
class Block:
    """What one ingest task parses: bytes ``start:end`` of an (extended) XYZ source whose first
    frame has index ``first``, or (``end`` None) a whole source of any format; ``root`` and
    ``name`` as :func:`find_sources` gives them; ``last``: the source's last block."""

    path: Path
    root: Path
    name: str
    start: int = 0
    end: int | None = None
    first: int = 0
    last: bool = True


@dataclass
class Parsed:
    """What a task made of a block: rows per collection (in frame order), frames refused."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def source_blocks(path: Path, root: Path, name: str, frames: int = BLOCK_FRAMES) -> Iterator[Block]:
    """The blocks of one source file: ranges of ``frames`` frames of an (extended) XYZ file,
    else the whole file."""
    try:
        xyz = path.stat().st_size > 0 and filetype(str(path), guess=True) in ("xyz", "extxyz")
    except Exception:  # read_frames reports what is wrong with it
        xyz = False
    if not xyz:
        yield Block(path, root, name)
        return
    ranges = xyz_blocks(path, frames)
    current = next(ranges)
    for following in ranges:
        yield Block(path, root, name, *current, last=False)
        current = following
    yield Block(path, root, name, *current)


def parse_block(
    block: Block, dataset: str | None, min_distance: float, species: dict[int, str] | None = None
) -> Parsed:
    """Read, check and turn into rows the frames of ``block`` (an ingest task; runs on a Dask
    worker): frames refused are returned with their source and index and why."""
    out = Parsed()
    if block.end is None:
        frames = read_frames(block.path, species)
    else:
        frames = _xyz_frames(_read_range(block.path, block.start, block.end), block.first)
    for index, item in frames:
        if isinstance(item, Exception):
            reason = str(item) if isinstance(item, SourceProblem) else f"unparseable: {type(item).__name__}: {item}"
        else:
            reason = check(item, min_distance)
        if not reason:
            try:
                row = snapshot_row(item, block.path, block.root, index, dataset or block.name)
            except ValueError as exc:  # a label of this frame only: refuse it, go on
                reason = f"bad label: {exc}"
            else:
                out.rows.setdefault(collection_name(item), []).append(row)
                continue
        out.rejected.append({"source": str(block.path), "index": index, "reason": printable(reason)})
    return out


class HashIndex:
    """The content hashes of a collection's snapshots, for vectorised lookups: those stored,
    sorted, and those added since (merged in when they grow past an eighth of the rest)."""

    def __init__(self, stored: np.ndarray) -> None:
        self.sorted = np.sort(np.asarray(stored, dtype=np.int64))
        self.recent = np.empty(0, dtype=np.int64)

    def new(self, hashes: np.ndarray) -> np.ndarray:
        """Which of ``hashes`` are of snapshots not seen yet (the first of equal ones)."""
        hashes = np.asarray(hashes, dtype=np.int64)
        i = np.minimum(np.searchsorted(self.sorted, hashes), max(0, len(self.sorted) - 1))
        seen = (self.sorted[i] == hashes) if len(self.sorted) else np.zeros(len(hashes), dtype=bool)
        seen |= np.isin(hashes, self.recent)
        first = np.zeros(len(hashes), dtype=bool)
        first[np.unique(hashes, return_index=True)[1]] = True
        return ~seen & first

    def add(self, hashes: np.ndarray) -> None:
        self.recent = np.concatenate([self.recent, np.asarray(hashes, dtype=np.int64)])
        if len(self.recent) > max(1 << 16, len(self.sorted) // 8):
            self.sorted, self.recent = np.sort(np.concatenate([self.sorted, self.recent])), self.recent[:0]


def _parsed(
    blocks: Iterable[Block], parse: Callable[[Block], Parsed], client: Client | None, window: int
) -> Iterator[tuple[Block, Parsed]]:
    """Each block with what ``parse`` made of it, in the order of ``blocks``: on ``client``'s
    workers, at most ``window`` at a time, or here when there is no client."""
    if client is None:
        yield from ((b, parse(b)) for b in blocks)
        return
    running: deque = deque()
    for block in blocks:
        running.append((block, client.submit(parse, block, pure=False)))
        if len(running) >= window:
            done, future = running.popleft()
            yield done, future.result()
    while running:
        done, future = running.popleft()
        yield done, future.result()


def ingest(
    store_path: str | Path,
    sources: Iterable[str | Path],
    chunk_size: int | None = None,
    batch: int = 1024,
    progress: bool = True,
    dataset: str | None = None,
    min_distance: float = MIN_DISTANCE,
    species: dict[int, str] | None = None,
    client: Client | None = None,
    block_frames: int = BLOCK_FRAMES,
) -> IngestReport:
    """Add the frames of ``sources`` (files or directories) to the store at ``store_path``.

    A frame with two atoms closer than ``min_distance`` (Å) is rejected as overlapping. Frames
    without an energy (MD, LAMMPS dumps) are stored unlabelled (energy NaN): featurized and
    mapped, never trained on. ``species`` names the element of each LAMMPS atom type
    (``{1: "C", 2: "H"}``) for dumps without an ``element`` column.

    Sources are parsed in blocks (:func:`parse_block`: an (extended) XYZ file ``block_frames``
    frames at a time, read as a stream, any other file whole) on ``client``'s workers, a few
    per worker at a time, or in this process when there is no client; this process alone
    appends, in the order of the sources and their frames, ``batch`` frames at a time, so the
    store is the same either way and memory stays bounded. A frame whose content hash is stored
    already (:class:`HashIndex`) is a duplicate and skipped. Frames go to the collection of
    their composition. Bad frames are reported in the result and recorded in the store.
    ``dataset`` names the origin of the energies of all ``sources`` (one code and functional);
    by default each source file is its own dataset (see :func:`find_sources`).

    A source is known by its content (:func:`source_digest`): a file read to its end before with
    no frame refused, at any path, is skipped; a changed file, or one with refused frames, is read
    again (other settings, e.g. ``min_distance``, may accept them; its stored frames are duplicates). A
    source that does not exist is reported in ``missing`` and nothing else happens; when no
    source exists, :class:`SourceError` is raised before the store is created.
    """
    require("min_distance", min_distance, {"low": 0}, "Å")
    require("block_frames", block_frames, {"low": 1})
    files, missing = existing_sources(sources)
    store = FeatureStore(store_path, mode="a", chunk_size=chunk_size)
    report = IngestReport(missing=missing)
    pending: dict[str, list[dict[str, Any]]] = {}
    known: dict[str, HashIndex] = {}

    def flush(coll: str) -> None:
        rows = pending.pop(coll, [])
        if rows:
            store.append_frames(coll, rows, {"natoms": len(rows[0]["numbers"]), "formula": coll})
            report.added[coll] = report.added.get(coll, 0) + len(rows)

    with store.writer("ingest"):
        known_sources, read, digests = store.sources, {}, {}
        seen: set[str] = set()

        def blocks() -> Iterator[Block]:
            for path, root, name in files:
                digest = source_digest(path)
                if digest in known_sources or digest in seen:
                    report.known += 1
                    continue
                seen.add(digest)
                digests[path] = digest
                yield from source_blocks(path, root, name, block_frames)

        workers = len(client.nthreads()) if client is not None else 1
        parse = partial(parse_block, dataset=dataset, min_distance=min_distance, species=species)
        refused: dict[Path, int] = {}
        with tqdm(total=len(files), desc="ingest", unit="file", disable=not progress) as bar:
            for block, parsed in _parsed(blocks(), parse, client, window=2 * workers + 1):
                report.rejected += parsed.rejected
                refused[block.path] = refused.get(block.path, 0) + len(parsed.rejected)
                for coll, rows in parsed.rows.items():
                    if coll not in known:
                        known[coll] = HashIndex(store.column(coll, "content_hash") if coll in store.collections else [])
                    new = known[coll].new([r["content_hash"] for r in rows])
                    report.duplicates += int((~new).sum())
                    kept = [r for r, keep in zip(rows, new) if keep]
                    known[coll].add([r["content_hash"] for r in kept])
                    report.unlabelled += sum(int(np.isnan(r["energy"])) for r in kept)
                    pending.setdefault(coll, []).extend(kept)
                    if len(pending[coll]) >= batch:
                        flush(coll)
                if block.last:
                    if not refused.pop(block.path):  # read to its end, nothing refused: not read again
                        read[digests[block.path]] = str(block.path)
                    bar.update(1)
            bar.update(len(files) - bar.n)  # the files known before
        for coll in list(pending):
            flush(coll)
        store.add_rejected(report.rejected)
        store.add_sources(read)  # last: a run killed before this reads its sources again
    return report
