"""Inverse analysis (seed paper §3.3, Fig. 6): which local structures make energies high or low.

For each chosen snapshot, the H1 birth–death pairs of its stored diagram that fall in grid cells
whose Ridge coefficient is above ``high`` (or below ``low``) are taken; each pair's HomCloud
**stable volume** (Obayashi 2023) is computed on the Dask workers, and the atoms of the volumes
are the high- and low-energy local structures. Their bond lengths and angles are then compared.

Stable volumes need the diagram's boundary map, which the stored diagrams do not keep, so each
worker recomputes the diagram of the snapshot with HomCloud, on the stored supercell grown into a
near-cube HomCloud accepts (:data:`HOMCLOUD_SIDE`), with ``save_boundary_map=True``; pairs are
matched by birth and death (equal up to rounding, whichever engine computed the stored diagram).
HomCloud needs orthorhombic cells, so the pairs of a triclinic snapshot are recorded as failed.
HomCloud runs in
an isolated child (:mod:`phstore.isolation`) with a time limit per pair; a pair that fails or
overruns is recorded with its reason and the analysis goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from phstore.analysis.bonds import bond_angles, bond_lengths
from phstore.analysis.ridge_map import CoefficientGrid, coefficient_grid
from phstore.compat import import_homcloud
from phstore.isolation import ChildFailure, runner_for
from phstore.modeldir import load_model_dir
from phstore.ph.homcloud import PRELOAD, orthorhombic_lengths, replicate, supercell
from phstore.plots import plot_bond_histograms, plot_regions
from phstore.provenance import provenance
from phstore.store import DONE, FRAMES, TARGET, FeatureStore, VariableSpec

HIGH, LOW = "high", "low"
#: The paper's thresholds on the Ridge coefficients (eV/atom per s.d. of a bin): high above, low below.
PAPER_HIGH, PAPER_LOW = 0.003, -0.0045
#: HomCloud recomputes each diagram on a near-cube with sides at least this long, Å: the cell as
#: the native engine takes it is often too small or elongated for HomCloud. Pairs in the
#: histogram's range are local rings, the same in the cover as in the cell.
HOMCLOUD_SIDE = 10.0
#: Per-atom tags in the store and in exported files.
TAGS = ("none", HIGH, LOW, "both")
_DIAGRAMS: dict[str, Any] = {}  # in the isolated child: the last snapshot's H1 pairs and their (birth, death)


def stable_volume_atoms(
    key: str, points: np.ndarray, box: np.ndarray, natoms: int, birth: float, death: float, noise: float
) -> list[int]:
    """Atoms (indices in the unreplicated cell) of the stable volume of the H1 pair
    ``(birth, death)`` (Å²) of the periodic alpha filtration of ``points`` in ``box``.

    ``noise`` is the noise bandwidth (Å²), capped at half the pair's lifetime (HomCloud needs it
    below the lifetime). Runs HomCloud in the current process; the diagram of ``key`` is kept
    for the next pair.
    """
    if key not in _DIAGRAMS:
        hc = import_homcloud()
        _DIAGRAMS.clear()
        pdlist = hc.PDList.from_alpha_filtration(
            points,
            periodicity=[(0.0, float(L)) for L in box],
            vertex_symbols=[str(i) for i in range(len(points))],
            save_boundary_map=True,
        )
        pairs = pdlist.dth_diagram(1).pairs()
        _DIAGRAMS[key] = (pairs, np.array([(p.birth_time(), p.death_time()) for p in pairs]).reshape(-1, 2))
    pairs, values = _DIAGRAMS[key]
    gap = np.abs(values - [birth, death]).sum(axis=1) if len(values) else np.array([np.inf])
    if gap.min() > 1e-9 * max(1.0, death):  # the same computation: equal up to rounding
        raise ValueError(f"no H1 pair ({birth}, {death}) in the recomputed diagram")
    pair = pairs[int(gap.argmin())]
    volume = pair.stable_volume(min(noise, 0.5 * (death - birth)))
    return sorted({int(s) % natoms for s in volume.points_symbols()})


@dataclass
class PairVolume:
    """One selected pair: its side (high/low), birth and death (Å²), its atoms or why it failed."""

    row: int
    side: str
    birth: float
    death: float
    atoms: list[int] | None
    error: str = ""


def selected_pairs(
    diagram: np.ndarray, grid: CoefficientGrid, high: float, low: float
) -> list[tuple[str, float, float]]:
    """``(side, birth, death)`` of the finite H1 pairs (rows ``degree, birth, death``) whose
    coefficient cell is above ``high`` or below ``low``. The periodic images of one pair in a
    supercell (equal birth and death to 1e-9 Å²) count once."""
    h1 = diagram[(diagram[:, 0] == 1) & np.isfinite(diagram[:, 2])]
    _, first = np.unique(np.round(h1[:, 1:], 9), axis=0, return_index=True)
    h1 = h1[np.sort(first)]
    ib, idb, inside = grid.bin_of(h1[:, 1], h1[:, 2])
    coef = np.where(inside, grid.values[ib, idb], 0.0)
    return [(HIGH if c > high else LOW, float(b), float(d)) for (_, b, d), c in zip(h1, coef) if c > high or c < low]


def snapshot_volumes(
    store_path: str,
    collection: str,
    ph_group: str,
    row: int,
    grid: CoefficientGrid,
    high: float,
    low: float,
    noise: float,
    time_limit: float,
) -> list[PairVolume]:
    """The stable volumes of one snapshot's selected pairs (runs on a Dask worker)."""
    store = FeatureStore(store_path, mode="r")
    (diagram,) = store.row_records(collection, ph_group, slice(row, row + 1))
    atoms = store.atoms(collection, slice(row, row + 1))[0]
    stored = np.asarray(store.read_rows(collection, ph_group, slice(row, row + 1), ["supercell"])["supercell"][0])
    lengths = orthorhombic_lengths(atoms.cell.array)
    factor, points = (1, 1, 1), None
    if lengths is not None:  # the stored diagram's supercell, grown into a near-cube HomCloud accepts
        factor = tuple(int(f) for f in stored * np.array(supercell(lengths * stored, HOMCLOUD_SIDE)))
        points = replicate(atoms.positions, lengths, factor)
    runner = runner_for(PRELOAD, time_limit)
    out = []
    for side, birth, death in selected_pairs(diagram, grid, high, low):
        if points is None:
            out.append(
                PairVolume(
                    row, side, birth, death, None, "triclinic cell: HomCloud's stable volumes need an orthorhombic box"
                )
            )
            continue
        try:
            found = runner.call(
                "phstore.analysis.inverse:stable_volume_atoms",
                f"{collection}/{row}",
                points,
                lengths * np.array(factor),
                len(atoms),
                birth,
                death,
                noise,
            )
            out.append(PairVolume(row, side, birth, death, found))
        except ChildFailure as exc:
            out.append(PairVolume(row, side, birth, death, None, f"{type(exc).__name__}: {exc}"))
    return out


@dataclass(frozen=True)
class InverseParams:
    """What identifies stored inverse-analysis results: the Ridge model, thresholds, noise (Å²)."""

    model_key: str
    high: float
    low: float
    noise: float


#: Snapshots an inverse analysis takes by default (the paper's 25 samples).
FIRST = 25

#: What an inverse analysis writes under its ``out``: every analysed snapshot with a per-atom
#: region tag, the bond data, their histograms, one snapshot drawn.
OUTPUTS = ("inverse-regions.extxyz", "inverse-bonds.npz", "inverse-bonds.png", "inverse-regions.png")

#: Bin edges of the stored bond histograms: lengths (Å) and angles (degrees).
LENGTH_BINS = np.linspace(1.1, 1.9, 41)
ANGLE_BINS = np.linspace(40.0, 180.0, 71)


@dataclass
class InverseReport:
    """What the inverse analysis found: per snapshot the atom tags, the pairs, the bond data."""

    collection: str
    rows: list[int]
    tags: dict[int, np.ndarray] = field(default_factory=dict)
    pairs: list[PairVolume] = field(default_factory=list)
    lengths: dict[str, np.ndarray] = field(default_factory=dict)
    angles: dict[str, np.ndarray] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    group: str = ""

    @property
    def failed(self) -> list[PairVolume]:
        return [p for p in self.pairs if p.atoms is None]

    def histograms(self) -> dict[str, Any]:
        """Bond-length and bond-angle histograms (counts) of each side, their bin edges, peak
        positions (centre of the fullest bin) and the snapshots (rows) they were counted over."""
        out: dict[str, Any] = {
            "snapshots": sorted(self.tags),
            "length_bins": LENGTH_BINS.tolist(),
            "angle_bins": ANGLE_BINS.tolist(),
        }
        for kind, data, bins in (("length", self.lengths, LENGTH_BINS), ("angle", self.angles, ANGLE_BINS)):
            for side, values in data.items():
                counts, _ = np.histogram(values, bins=bins)
                out[f"{kind}_{side}"] = counts.tolist()
                out[f"{kind}_peak_{side}"] = float((bins[:-1] + bins[1:])[counts.argmax()] / 2) if len(values) else None
        return out


def tag_atoms(natoms: int, volumes: Sequence[PairVolume]) -> np.ndarray:
    """Per-atom index into :data:`TAGS`: in a high volume, a low one, both, or none."""
    high, low = np.zeros(natoms, dtype=bool), np.zeros(natoms, dtype=bool)
    for v in volumes:
        if v.atoms is not None:
            (high if v.side == HIGH else low)[v.atoms] = True
    return (high * 1 + low * 2).astype(np.int8)


def inverse_analysis(
    model_path: str | Path,
    store_path: str | Path,
    collection: str,
    client,
    rows: Sequence[int] | slice | None = None,
    high: float = PAPER_HIGH,
    low: float = PAPER_LOW,
    noise: float = 0.3,
    time_limit: float = 60.0,
    out: str | Path = ".",
    progress: bool = True,
    first: int = FIRST,
) -> InverseReport:
    """Inverse analysis of ``rows`` of ``collection`` (snapshot indices, or a slice of them;
    default: its first ``first`` snapshots with finished PH) with the Ridge model at ``model_path``;
    stable volumes on ``client``'s workers.

    Stores per-atom region tags, bond histograms and failed pairs in an ``inverse-<key>`` group
    of the collection, and writes under ``out``: ``inverse-bonds.png`` (bond lengths and angles, high vs low),
    ``inverse-regions.png`` (one snapshot with its regions coloured), ``inverse-regions.extxyz``
    (every analysed snapshot with a per-atom ``region`` tag) and ``inverse-bonds.npz`` (the
    bond data); ``noise`` is the stable volumes' noise bandwidth, Å².
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    model = load_model_dir(model_path, "ridge")
    grid = coefficient_grid(model)
    ph_group = model.config["descriptor_groups"][0]
    store = FeatureStore(store_path, mode="r")
    if ph_group not in store.descriptor_groups(collection):
        raise ValueError(f"{collection} has no {ph_group} diagrams (the model's PH variant); featurize it first")
    rows = analysis_rows(store, collection, ph_group, rows, first)
    futures = [
        client.submit(
            snapshot_volumes,
            str(Path(store_path).resolve()),
            collection,
            ph_group,
            r,
            grid,
            high,
            low,
            noise,
            time_limit,
            pure=False,
        )
        for r in rows
    ]
    report = InverseReport(collection, rows)
    for future in tqdm(
        as_completed(futures), total=len(futures), desc="stable volumes", unit="snapshot", disable=not progress
    ):
        report.pairs += future.result()
    frames = dict(zip(rows, (store.atoms(collection, slice(r, r + 1))[0] for r in rows)))
    lengths: dict[str, list[np.ndarray]] = {HIGH: [], LOW: []}
    angles: dict[str, list[np.ndarray]] = {HIGH: [], LOW: []}
    for r, atoms in frames.items():
        tags = tag_atoms(len(atoms), [p for p in report.pairs if p.row == r])
        report.tags[r] = tags
        for side, code in ((HIGH, 1), (LOW, 2)):
            region = (tags == code) | (tags == 3)
            lengths[side].append(bond_lengths(atoms, region))
            angles[side].append(bond_angles(atoms, region))
    report.lengths = {side: np.concatenate(v) for side, v in lengths.items()}
    report.angles = {side: np.concatenate(v) for side, v in angles.items()}
    report.group = _store_results(report, InverseParams(model.key, high, low, noise), store_path)
    report.files = _write_outputs(report, frames, store, Path(out))
    return report


def analysis_rows(
    store: FeatureStore, collection: str, ph_group: str, rows: Sequence[int] | slice | None, first: int = FIRST
) -> list[int]:
    """The snapshots an inverse analysis of ``rows`` takes (all given ones, or the first
    ``first`` with finished PH); a ValueError names those without a finished diagram."""
    finished = np.flatnonzero(store.status(collection, ph_group) == DONE)
    if isinstance(rows, slice):
        rows = np.arange(store.n_snapshots(collection))[rows]
    rows = [int(r) for r in (finished[:first] if rows is None else rows)]
    missing = sorted(set(rows) - set(finished.tolist()))
    if missing:
        raise ValueError(f"snapshots {missing} of {collection} have no finished {ph_group} diagram")
    return rows


def inverse_group(params: InverseParams) -> str:
    """The store group of the inverse-analysis results of ``params``."""
    return f"inverse-{provenance('inverse', params, ('homcloud',))['key']}"


def analysed(
    model_path: str | Path,
    store_path: str | Path,
    collection: str,
    rows: Sequence[int] | slice | None = None,
    high: float = PAPER_HIGH,
    low: float = PAPER_LOW,
    noise: float = 0.3,
    out: str | Path = ".",
    first: int = FIRST,
) -> bool:
    """Whether :func:`inverse_analysis` with these arguments has nothing left to do: the store
    holds the regions of every snapshot it would take, for this model, thresholds and noise, and
    ``out`` holds its outputs."""
    model = load_model_dir(model_path, "ridge")
    store = FeatureStore(store_path, mode="r")
    group = inverse_group(InverseParams(model.key, high, low, noise))
    if group not in store.descriptor_groups(collection) or not all((Path(out) / f).is_file() for f in OUTPUTS):
        return False
    wanted = analysis_rows(store, collection, model.config["descriptor_groups"][0], rows, first)
    return bool((store.status(collection, group)[wanted] == DONE).all())


def _store_results(report: InverseReport, params: InverseParams, store_path: str | Path) -> str:
    """Per-atom region tags of the analysed snapshots (``region``: index into :data:`TAGS`;
    ``status`` done, pending for snapshots not analysed) in an ``inverse-<key>`` group; the bond
    histograms and the failed pairs in its attributes."""
    store = FeatureStore(store_path, mode="r+")
    prov = provenance("inverse", params, ("homcloud",))
    group = inverse_group(params)
    natoms = int(store.collection_attrs(report.collection)["natoms"])
    with store.writer(f"analyze inverse {group}"):
        store.ensure_descriptor(
            report.collection, group, prov, {"region": VariableSpec(("atom",), (natoms,), "int8", 0)}
        )
        for r, tags in report.tags.items():
            store.commit_rows(report.collection, group, slice(r, r + 1), {"region": tags[None]}, [DONE])
        store.annotate(
            report.collection,
            group,
            {
                "bond_histograms": report.histograms(),
                "failed_pairs": [
                    {"snapshot": p.row, "birth": p.birth, "death": p.death, "error": p.error} for p in report.failed
                ],
            },
        )
    return group


def _write_outputs(report: InverseReport, frames: dict, store: FeatureStore, out: Path) -> list[Path]:
    import ase.io

    out.mkdir(parents=True, exist_ok=True)
    energy = store.read_rows(report.collection, FRAMES, slice(0, store.n_snapshots(report.collection)), [TARGET])[
        TARGET
    ]
    tagged = []
    for r, atoms in frames.items():
        a = atoms.copy()
        a.arrays["region"] = np.array([TAGS[t] for t in report.tags[r]])
        a.info.update(collection=report.collection, snapshot=r, energy_per_atom=float(energy[r]))
        tagged.append(a)
    xyz, npz, bonds, regions = (out / f for f in OUTPUTS)
    ase.io.write(xyz, tagged, format="extxyz")
    np.savez(
        npz,
        **{
            f"{kind}_{side}": values
            for kind, data in (("length", report.lengths), ("angle", report.angles))
            for side, values in data.items()
        },
    )
    shown = max(frames, key=lambda r: int((report.tags[r] > 0).sum()))
    return [
        xyz,
        npz,
        plot_bond_histograms(report.lengths, report.angles, bonds, f"{report.collection}: {len(frames)} snapshots"),
        plot_regions(
            frames[shown],
            report.tags[shown],
            regions,
            f"{report.collection} snapshot {shown}: high (red) and low (blue) energy regions",
        ),
    ]
