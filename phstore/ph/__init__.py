"""Persistent homology of periodic atomic cells: phstore's own periodic alpha engine.

:func:`periodic_alpha_diagram` gives the persistence diagrams (degrees 0-2, squared radii Å²,
like HomCloud's ``PDList.from_alpha_filtration``) of any 3-periodic cell as it is: any basis,
triclinic or hexagonal, any size. :mod:`.filtration` builds the filtration on the torus,
:mod:`.reduction` pairs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from phstore.ph.filtration import Deadline, Filtration, PeriodicAlphaError, periodic_alpha_filtration
from phstore.ph.reduction import persistence_pairs


@dataclass(frozen=True)
class Diagram:
    """Persistence pairs of one frame.

    ``rows``: ``(degree, birth, death)``, Å², sorted; ``death = inf`` for classes never killed:
    the essential classes of the 3-torus, plus, when ``max_value`` is finite, the classes still
    alive at ``max_value`` (their death is above it). ``jittered``: the frame was degenerate and
    was computed with a seeded ~1e-7 Å jitter. ``counts``: simplices of dimension 0-3.
    """

    rows: np.ndarray
    jittered: bool
    max_value: float
    counts: tuple[int, ...]

    def degree(self, d: int) -> np.ndarray:
        """``(birth, death)`` pairs of degree ``d``."""
        return self.rows[self.rows[:, 0] == d, 1:]


def periodic_alpha_diagram(
    positions: np.ndarray,
    cell: np.ndarray,
    degrees: tuple[int, ...] = (0, 1, 2),
    max_value: float = math.inf,
    time_limit: float = math.inf,
    seed: int = 0,
) -> Diagram:
    """Persistence diagrams of the periodic alpha filtration of atoms at ``positions`` (Å) in
    the periodic ``cell`` (rows are lattice vectors, Å), degrees ``degrees``.

    ``max_value`` (Å²) truncates the filtration: every pair that dies at or below it is exact.
    ``time_limit`` (s) bounds the work (checked between stages, raising :class:`Deadline`).
    Raises :class:`PeriodicAlphaError` with the reason for input it cannot handle.
    """
    f = periodic_alpha_filtration(positions, cell, max_value=max_value, time_limit=time_limit, seed=seed)
    rows = persistence_pairs(f.dims, f.values, f.indptr, f.indices)
    return Diagram(rows[np.isin(rows[:, 0], degrees)], f.jittered, f.max_value, f.counts)


__all__ = [
    "Deadline",
    "Diagram",
    "Filtration",
    "PeriodicAlphaError",
    "periodic_alpha_diagram",
    "periodic_alpha_filtration",
    "persistence_pairs",
]
