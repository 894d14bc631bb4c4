"""HomCloud's periodic alpha filtration: the cross-check engine and the inverse analysis' source.

HomCloud's periodic alpha shape takes an orthorhombic box and fails on boxes that are too small
("Points are too few ... 1-sheet covering is not allowed", or an abort) or elongated (aborts or
hangs: ``../shared/notes/homcloud-periodic.md``). :func:`supercell` replicates a cell into a
near-cube with every side at least ``min_side``; the PH descriptor grows it and retries after a
"too few points" error or an abort. Call :func:`persistence_diagrams` in an isolated child
(:mod:`phstore.isolation`) unless the box is known to be safe. A supercell's diagram is that of
a k-fold cover of the cell, not the cell's own.
"""

from __future__ import annotations

import math

import numpy as np

from phstore.compat import import_homcloud

#: HomCloud's message for a cell too small for its 1-sheet periodic triangulation.
TOO_FEW = "Points are too few"
#: Modules a child running HomCloud imports once.
PRELOAD = ("homcloud.interface",)


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
    """Rows ``(degree, birth, death)`` (Å², squared radii), sorted, of HomCloud's periodic alpha
    filtration of ``points`` in the orthorhombic ``box`` (Å). Essential pairs have ``death = +inf``.
    Runs HomCloud in the current process."""
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
    out = np.concatenate(rows) if rows else np.empty((0, 3))
    return out[np.lexsort(out.T[::-1])]
