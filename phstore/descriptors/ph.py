"""Persistent homology of the periodic alpha filtration (HomCloud) and its normalised histogram.

Seed paper §2.2: first-homology persistence diagram of the periodic alpha filtration, turned
into a 128×128 histogram on [0, 8]×[0, 8] (birth × death, HomCloud's default *squared radius*
units, Å²) and normalised to a probability distribution. Diagrams of degree 0, 1 and 2 are
kept losslessly (essential pairs with death = +inf).

HomCloud's periodic alpha shape takes an orthorhombic box and fails on boxes that are too small
("Points are too few ... 1-sheet covering is not allowed", or an abort) or elongated (aborts or
hangs when the longest side is at least twice the shortest). :func:`supercell` replicates a cell
into a near-cube with every side at least ``min_side``; a "too few points" error or an abort
grows the near-cube and retries, up to ``max_atoms``. The factor used is stored per snapshot. Every HomCloud call
runs in an isolated child with a time limit (:mod:`phstore.isolation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from phstore.descriptors.base import Descriptor, FrameResult
from phstore.isolation import ChildCrashed, ChildError, ChildTimeout, runner_for
from phstore.store import VariableSpec

_TOO_FEW = "Points are too few"
_PRELOAD = ("homcloud.interface",)


@dataclass(frozen=True)
class PHParams:
    """Parameters of the PH descriptor (all enter the provenance key).

    Attributes
    ----------
    degrees: homology degrees whose diagrams are stored.
    histogram_degree: degree of the histogrammed diagram (the paper's first homology).
    bins: histogram bins per axis.
    range: ``(low, high)`` of birth and death axes, Å² (squared radii).
    min_side: replicate the cell until every side is at least this long, Å. HomCloud raises
        or aborts on cells below about 8-10 Å; 10 Å leaves the paper's 216-atom cells as they are.
    max_atoms: give up growing the supercell beyond this many atoms.
    """

    degrees: tuple[int, ...] = (0, 1, 2)
    histogram_degree: int = 1
    bins: int = 128
    range: tuple[float, float] = (0.0, 8.0)
    min_side: float = 10.0
    max_atoms: int = 4096


def orthorhombic_lengths(cell: np.ndarray, tol: float = 1e-6) -> np.ndarray | None:
    """Box lengths (Å) of a diagonal cell matrix, or None if the cell is not orthorhombic."""
    cell = np.asarray(cell, dtype=float)
    lengths = np.diag(cell).copy()
    if np.any(np.abs(cell - np.diag(lengths)) > tol * max(1.0, float(np.abs(lengths).max()))):
        return None
    return lengths


def supercell(lengths: np.ndarray, min_side: float = 0.0) -> tuple[int, int, int]:
    """Replication factors that make the box a near-cube (longest / shortest side < 2).

    Each side is repeated ``ceil(T / L_i)`` times with ``T = max(min_side, max L_i)``, so every
    replicated side lies in ``[T, 2T)``.
    """
    target = max(float(min_side), float(np.max(lengths)))
    return tuple(max(1, math.ceil(target / L - 1e-9)) for L in lengths)  # type: ignore[return-value]


def grow(lengths: np.ndarray, factor: tuple[int, int, int]) -> tuple[int, int, int]:
    """The next near-cubic supercell: every side longer than the current shortest one.

    Growing one axis alone would make an elongated box, which HomCloud aborts on.
    """
    return supercell(lengths, float(np.min(np.asarray(factor) * lengths)) * (1 + 1e-6))


def replicate(positions: np.ndarray, lengths: np.ndarray, factor: tuple[int, int, int]) -> np.ndarray:
    """Positions wrapped into the box and tiled ``factor`` times (orthorhombic box)."""
    wrapped = np.mod(positions, lengths)
    wrapped[wrapped >= lengths] = 0.0  # -1e-17 % L == L
    shifts = np.stack(np.meshgrid(*[np.arange(n) for n in factor], indexing="ij"), -1).reshape(-1, 3)
    return (wrapped[None, :, :] + (shifts * lengths)[:, None, :]).reshape(-1, 3)


def persistence_diagrams(points: np.ndarray, box: np.ndarray, degrees: tuple[int, ...]) -> np.ndarray:
    """Rows ``(degree, birth, death)`` (Å², squared radii) of the periodic alpha filtration.

    Runs HomCloud in the current process: call it through :class:`PH` (isolated) unless the
    points are known to be safe. Essential pairs have ``death = +inf``.
    """
    from phstore.compat import import_homcloud

    hc = import_homcloud()
    pdlist = hc.PDList.from_alpha_filtration(
        points, periodicity=[(0.0, float(L)) for L in box], save_boundary_map=False, save_suppl_info=False
    )
    rows = []
    for degree in degrees:
        pd = pdlist.dth_diagram(degree)
        births = np.concatenate([pd.births, pd.essential_births])
        deaths = np.concatenate([pd.deaths, np.full(len(pd.essential_births), np.inf)])
        rows.append(np.column_stack([np.full(len(births), degree, dtype=float), births, deaths]))
    return np.concatenate(rows) if rows else np.empty((0, 3))


def normalized_histogram(diagram: np.ndarray, degree: int, bins: int, range_: tuple[float, float]) -> np.ndarray:
    """``bins × bins`` histogram (birth × death) of the finite pairs of ``degree``, summing to 1.

    Raises ValueError when no pair falls in the range.
    """
    pairs = diagram[(diagram[:, 0] == degree) & np.isfinite(diagram[:, 2])]
    hist, _, _ = np.histogram2d(pairs[:, 1], pairs[:, 2], bins=bins, range=[range_, range_])
    total = hist.sum()
    if total == 0:
        raise ValueError(f"no finite degree-{degree} pair in {range_}")
    return hist / total


class PH(Descriptor):
    """Periodic-alpha persistence diagrams and the normalised histogram of one degree.

    Parameters
    ----------
    params:
        :class:`PHParams` (enter the provenance key).
    time_limit:
        Seconds one HomCloud call may run before its child process is killed and the frame
        is recorded as failed (an execution setting, not part of the provenance).
    """

    name = "ph"
    packages = ("homcloud",)
    record_columns = ("row", "degree", "birth", "death")

    def __init__(self, params: PHParams = PHParams(), time_limit: float = 120.0) -> None:
        self.params = params
        self.time_limit = time_limit

    def variables(self, natoms: int) -> dict[str, VariableSpec]:
        b = self.params.bins
        return {
            "histogram": VariableSpec(("birth_bin", "death_bin"), (b, b), "float32", np.nan),
            "supercell": VariableSpec(("axis",), (3,), "int16", 0),
        }

    def compute(self, atoms: Atoms) -> FrameResult:
        p = self.params
        lengths = orthorhombic_lengths(atoms.cell.array)
        if lengths is None:
            return FrameResult.failed(
                "triclinic cell: HomCloud's periodic alpha filtration takes an orthorhombic box; "
                "convert the frame to an orthorhombic supercell before ingest"
            )
        factor = supercell(lengths, p.min_side)
        runner = runner_for(_PRELOAD, self.time_limit)
        while True:
            points = replicate(atoms.positions, lengths, factor)
            try:
                diagram = runner.call(
                    "phstore.descriptors.ph:persistence_diagrams", points, lengths * factor, p.degrees
                )
                break
            except ChildTimeout as exc:
                return FrameResult.failed(f"HomCloud hung (supercell {factor}): {exc}")
            except (ChildError, ChildCrashed) as exc:
                # "too few points" and aborts both come from cells too small for HomCloud's
                # 1-sheet periodic triangulation: a bigger near-cube is the measured cure.
                retry = isinstance(exc, ChildCrashed) or _TOO_FEW in str(exc)
                bigger = grow(lengths, factor)
                if retry and len(atoms) * int(np.prod(bigger)) <= p.max_atoms:
                    factor = bigger
                    continue
                what = "aborted" if isinstance(exc, ChildCrashed) else "raised"
                return FrameResult.failed(f"HomCloud {what} (supercell {factor}): {exc}")
        try:
            hist = normalized_histogram(diagram, p.histogram_degree, p.bins, p.range)
        except ValueError as exc:
            return FrameResult.failed(str(exc))
        return FrameResult(
            values={"histogram": hist.astype(np.float32), "supercell": np.asarray(factor, dtype=np.int16)},
            records=diagram,
        )
