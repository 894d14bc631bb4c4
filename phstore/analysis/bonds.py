"""Bond lengths and bond angles of chosen atoms (seed paper Fig. 6c, d), from matscipy's periodic
neighbour list (as ingest's overlap check).

A bond joins two atoms closer than ``cutoff`` (1.85 Å by default: past the first C–C peak, before
the second shell). A region's bond lengths are those of bonds with at least one end in the
region; its angles are the angles j–i–k at the region's atoms i between two of their bonds.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from matscipy.neighbours import neighbour_list

CC_CUTOFF = 1.85  # Å


def bond_lengths(atoms: Atoms, region: np.ndarray, cutoff: float = CC_CUTOFF) -> np.ndarray:
    """Lengths (Å) of bonds with at least one end in ``region`` (a boolean mask), each once."""
    i, j, d = neighbour_list("ijd", atoms, cutoff)
    keep = (i < j) & (region[i] | region[j])
    return d[keep]


def bond_angles(atoms: Atoms, region: np.ndarray, cutoff: float = CC_CUTOFF) -> np.ndarray:
    """Angles (degrees) j–i–k between pairs of bonds at each atom i of ``region``."""
    i, vectors = neighbour_list("iD", atoms, cutoff)
    out = []
    for centre in np.flatnonzero(region):
        v = vectors[i == centre]
        if len(v) < 2:
            continue
        unit = v / np.linalg.norm(v, axis=1, keepdims=True)
        a, b = np.triu_indices(len(v), k=1)
        out.append(np.degrees(np.arccos(np.clip((unit[a] * unit[b]).sum(axis=1), -1.0, 1.0))))
    return np.concatenate(out) if out else np.empty(0)
