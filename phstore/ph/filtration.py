"""The periodic alpha filtration of any 3-periodic cell, as a complex on the torus.

Positions are Å, filtration values squared radii, Å² (HomCloud's default units). The steps (see
``ARCHITECTURE.md`` and ``../shared/notes/periodic-ph-engine.md`` for the measurements behind them):

1. The cell is Minkowski-reduced (the quotient does not depend on the basis) and the atoms are
   wrapped to fractional coordinates in ``[0, 1)``.
2. Images: every lattice translate of an atom whose fractional coordinates lie within a *skin*
   (Å, per cell height) of the cell; qhull's Delaunay triangulation of home atoms plus images.
3. One tetrahedron per orbit of lattice translations: the one whose smallest vertex, in the
   order (atom, integer offset), lies in the home cell. Every kept tetrahedron must have its
   circumball inside the replicated region (then no missing image can lie in it, so it is a
   Delaunay tetrahedron of the infinite periodic set); if one does not, the skin grows to what
   that tetrahedron needs and the triangulation is redone.
4. Faces are named by their own canonical translate (atom of the smallest vertex, then the
   other vertices' atoms and offsets relative to it), so the boundaries of the quotient come
   from ``np.unique``'s inverse. Geometry is computed from *differences of fractional
   coordinates plus integer offsets*, so every translate of a simplex has a bitwise-equal value.
5. Alpha values: a tetrahedron's is its circumradius²; a triangle's or an edge's is its own
   smallest circumradius² when it is Gabriel (no vertex of a coface inside its smallest
   circumsphere), else the minimum over its cofaces; vertices 0.

A small cell's quotient can hold a simplex whose boundary meets one face orbit twice (a
Δ-complex, not a simplicial complex); the pair cancels mod 2 in the boundary matrix, which gives
the cellular homology of the alpha shape on the torus. No supercell is needed for any cell size.

With ``max_value`` finite the skin is capped at ``2·sqrt(max_value)``: every simplex with value
≤ ``max_value`` is then exact (its circumball lies within ``2·sqrt(max_value)`` of a home atom)
and the others are left out, so every persistence pair that dies at or below ``max_value`` is
exact and the classes alive at ``max_value`` come out as essential.

Degenerate input (cospherical or coplanar points of a perfect crystal, for which the Delaunay
triangulation is not unique and qhull may triangulate translates differently) is detected and
computed again once with the home atoms moved by a seeded ~1e-7 Å jitter; the result says so.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
from ase.geometry import minkowski_reduce
from scipy.spatial import Delaunay, QhullError

from phstore.ph import kernels
from phstore.ph.reduction import boundary_matrix

#: Initial skin in units of the mean interatomic spacing (V/N)^(1/3): enough at ≥ 2.4 g/cm³.
SKIN_SPACINGS = 2.5
#: Jitter (Å, standard deviation) of the one retry of a degenerate frame.
JITTER = 1e-7
#: Relative tolerance of the degeneracy checks (cospherical neighbours, flat tetrahedra).
DEGENERATE = 1e-10


class PeriodicAlphaError(ValueError):
    """A frame whose periodic alpha filtration cannot be computed (the message says why)."""


class Deadline(PeriodicAlphaError):
    """The computation ran past its time limit (checked between stages)."""


@dataclass(frozen=True)
class Filtration:
    """A filtered complex on the torus, simplices in filtration order.

    ``dims``, ``values`` (Å²) per simplex, non-decreasing values with faces before cofaces;
    ``indptr``/``indices`` the mod-2 boundary matrix in compressed columns (row = position of
    a face in the filtration; faces met twice already cancelled). ``jittered`` is set when the
    frame was degenerate and computed again with jittered positions; ``max_value`` is the
    truncation (``inf``: complete); ``skin`` the skin used, Å.
    """

    dims: np.ndarray
    values: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    jittered: bool
    max_value: float
    skin: float

    @property
    def counts(self) -> tuple[int, ...]:
        """Number of simplices of dimension 0, 1, 2, 3."""
        return tuple(int(c) for c in np.bincount(self.dims, minlength=4))


class _Degenerate(Exception):
    """Internal: the triangulation is not unique or not consistent; retry with jitter."""


class _Cell:
    """A Minkowski-reduced cell (``vectors``, rows, Å) and its atoms' fractional coordinates in
    ``[0, 1)``; ``heights`` are the distances between opposite faces, Å."""

    def __init__(self, vectors: np.ndarray, frac: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=float)
        self.inverse = np.linalg.inv(self.vectors)
        self.volume = abs(float(np.linalg.det(self.vectors)))
        frac = frac - np.floor(frac)
        frac[frac >= 1.0] = 0.0  # -1e-17 wraps to 1.0 in floating point
        self.frac = frac
        cross = np.cross(self.vectors[[1, 2, 0]], self.vectors[[2, 0, 1]])
        self.heights = self.volume / np.linalg.norm(cross, axis=1)
        self.spacing = (self.volume / len(frac)) ** (1 / 3)

    @classmethod
    def of(cls, positions: np.ndarray, cell: np.ndarray) -> "_Cell":
        cell = np.asarray(cell, dtype=float)
        positions = np.asarray(positions, dtype=float)
        if cell.shape != (3, 3) or positions.ndim != 2 or positions.shape[1] != 3 or len(positions) == 0:
            raise PeriodicAlphaError(
                f"need positions (N, 3) with N ≥ 1 and a 3×3 cell, got {positions.shape} and {cell.shape}"
            )
        if not (np.isfinite(cell).all() and np.isfinite(positions).all()):
            raise PeriodicAlphaError("positions or cell hold NaN or infinity")
        if abs(float(np.linalg.det(cell))) <= 1e-9 * max(1.0, float(np.abs(cell).max())) ** 3:
            raise PeriodicAlphaError("the cell has no volume: its three vectors are not independent")
        reduced, _ = minkowski_reduce(cell)
        vectors = np.asarray(reduced, dtype=float)
        return cls(vectors, positions @ np.linalg.inv(vectors))

    def jittered(self, seed: int) -> "_Cell":
        """Atoms and lattice vectors moved by ``JITTER`` Å (a lattice of one atom is degenerate
        as long as its cell is, e.g. simple cubic)."""
        rng = np.random.default_rng(seed)
        frac = self.frac + rng.normal(scale=JITTER, size=self.frac.shape) @ self.inverse
        return _Cell(self.vectors + rng.normal(scale=JITTER, size=(3, 3)), frac)


@dataclass
class _Images:
    """Home atoms (first ``n``) and their images within ``skin`` Å of the cell."""

    atom: np.ndarray  # (P,) atom index of each point
    offset: np.ndarray  # (P, 3) integer lattice offset of each point
    xyz: np.ndarray  # (P, 3) Cartesian coordinates, Å
    span: int  # offsets lie in [-span, span]


def _images(cell: _Cell, skin: float, max_points: int) -> _Images:
    """Home atoms and their images within ``skin`` Å of the cell. If they lie in one plane (a
    sheet or a chain with vacuum around it, truncated), every neighbouring cell's images are
    added too: qhull needs points in three dimensions, and the tetrahedra across the vacuum
    are far above the truncation."""
    reach = skin / cell.heights
    img = _within(cell, reach, max_points)
    if len(img.xyz) < 4 or _flat(img.xyz):
        img = _within(cell, np.maximum(reach, 1.0), max_points)
    return img


def _flat(xyz: np.ndarray) -> bool:
    spread = np.linalg.eigvalsh(np.cov(xyz.T))
    return bool(spread[0] <= 1e-12 * spread[2])


def _within(cell: _Cell, reach: np.ndarray, max_points: int) -> _Images:
    n = len(cell.frac)
    ranges = [range(-s, s + 1) for s in np.ceil(reach).astype(int)]
    offsets = np.array(sorted(itertools.product(*ranges), key=lambda o: o != (0, 0, 0)), dtype=np.int64)
    expected = n * float(np.prod(1 + 2 * reach))
    if expected > max_points:
        raise PeriodicAlphaError(
            f"the cell needs about {expected:,.0f} image points for a skin of "
            f"{float((reach * cell.heights).max()):.1f} Å "
            f"(limit {max_points:,}): it holds large empty regions (a slab with vacuum?); truncate the filtration "
            "(a finite max_value) to compute it"
        )
    f = cell.frac[None, :, :] + offsets[:, None, :]
    keep = np.all((f >= -reach) & (f < 1.0 + reach), axis=2)
    keep[0] = True
    which, atom = np.nonzero(keep)
    return _Images(atom, offsets[which], f[which, atom] @ cell.vectors, int(np.ceil(reach).max()))


def _codes(atom: np.ndarray, offset: np.ndarray, span: int) -> np.ndarray:
    """Integers ordered as (atom, offset x, offset y, offset z) for offsets in [-span, span]."""
    base = 2 * span + 1
    o = offset + span
    return ((atom.astype(np.int64) * base + o[..., 0]) * base + o[..., 1]) * base + o[..., 2]


@dataclass
class _Orbits:
    """Simplices of one dimension, one per translation orbit, each in its canonical translate:
    ``atoms[i]`` its vertices' atoms (smallest vertex first), ``offsets[i]`` their offsets
    relative to the first vertex."""

    atoms: np.ndarray  # (S, d+1)
    offsets: np.ndarray  # (S, d+1, 3)


def _faces(orbits: _Orbits, span: int) -> tuple[_Orbits, np.ndarray]:
    """The facets of every simplex as orbits: the distinct canonical facets and, for each
    simplex, the index of each of its facets (facet j leaves out vertex j)."""
    s, k = orbits.atoms.shape
    drop = [[v for v in range(k) if v != j] for j in range(k)]
    atoms = orbits.atoms[:, drop].reshape(s * k, k - 1)
    offsets = orbits.offsets[:, drop].reshape(s * k, k - 1, 3)
    offsets = offsets - offsets[:, :1]  # the facet's own canonical translate (vertex order kept)
    keys = np.column_stack([atoms[:, 0], _codes(atoms[:, 1:], offsets[:, 1:], 2 * span)])
    radix = (4 * span + 1) ** 3 * (int(atoms.max()) + 1)  # every column is below this
    if radix ** keys.shape[1] < 2**63:  # one int64 key per facet: sorting it is 5x faster
        packed = keys[:, 0].copy()
        for col in keys.T[1:]:
            packed = packed * radix + col
        keys = packed[:, None]
    order = np.lexsort(keys.T[::-1])
    sorted_keys = keys[order]
    new = np.ones(len(keys), dtype=bool)
    new[1:] = np.any(sorted_keys[1:] != sorted_keys[:-1], axis=1)
    inverse = np.empty(len(keys), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    first = order[new]
    return _Orbits(atoms[first], offsets[first]), inverse.reshape(s, k)


def _triangulate(cell: _Cell, max_value: float, deadline: float, max_points: int) -> tuple[_Orbits, np.ndarray, float]:
    """Canonical tetrahedra of the periodic Delaunay triangulation (all of them, or with
    ``max_value`` finite all with circumradius² ≤ ``max_value`` and possibly others), their
    circumradii², and the skin used."""
    cap = 2 * math.sqrt(max_value) * (1 + 1e-9) + 1e-9 if math.isfinite(max_value) else math.inf
    skin = min(SKIN_SPACINGS * cell.spacing, cap)
    n = len(cell.frac)
    while True:
        _check(deadline)
        img = _images(cell, skin, max_points)
        try:
            tri = Delaunay(img.xyz)
        except QhullError as exc:
            raise _Degenerate(str(exc).strip().splitlines()[0]) from None
        rows, index = kernels.canonical_tetrahedra(tri.simplices, _codes(img.atom, img.offset, img.span), n)
        tets = _Orbits(img.atom[rows], img.offset[rows])
        centre, r2, volume6, scale, need = kernels.tetrahedra(
            cell.frac, cell.vectors, cell.inverse, cell.heights, tets.atoms, tets.offsets
        )
        if np.any(np.abs(volume6) <= DEGENERATE * scale):
            raise _Degenerate("flat tetrahedra")
        if np.any(np.bincount(tets.atoms.ravel(), minlength=n) == 0):
            raise _Degenerate("atoms that are no vertex (duplicated positions?)")
        if kernels.cospherical(tri.simplices, tri.neighbors, index, rows[:, 0], img.xyz, centre, r2, DEGENERATE):
            raise _Degenerate("cospherical points")
        short = need > skin * (1 - 1e-9) - 1e-9  # exact skin check, conservative by 1e-9
        if not short.any():
            total = np.abs(volume6).sum() / 6
            if math.isinf(max_value) and abs(total - cell.volume) > 1e-8 * cell.volume:
                raise _Degenerate(f"tetrahedra fill {total:.6f} Å³ of a {cell.volume:.6f} Å³ cell")
            return tets, r2, skin
        if skin >= cap:  # truncated: what is still short has circumradius > sqrt(max_value)
            if np.any(r2[short] <= max_value):
                raise PeriodicAlphaError("internal: a tetrahedron below the truncation lies outside the skin")
            return tets, r2, skin
        skin = min(cap, max(float(need.max()) * 1.05, skin * 1.25))


def _check(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise Deadline("time limit reached")


def _filtration(
    cell: _Cell, max_value: float, deadline: float, max_points: int
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Values per dimension (0..3) and boundaries (faces' indices within their dimension)."""
    tets, tet_values, skin = _triangulate(cell, max_value, deadline, max_points)
    _check(deadline)
    span = int(max(np.abs(tets.offsets).max(), 1))
    triangles, tet_faces = _faces(tets, span)
    tri_values = kernels.attach(
        cell.frac,
        cell.vectors,
        tets.atoms,
        tets.offsets,
        tet_values,
        tet_faces,
        kernels.own_values(cell.frac, cell.vectors, triangles.atoms, triangles.offsets),
    )
    edges, tri_faces = _faces(triangles, span)
    edge_values = kernels.attach(
        cell.frac,
        cell.vectors,
        triangles.atoms,
        triangles.offsets,
        tri_values,
        tri_faces,
        kernels.own_values(cell.frac, cell.vectors, edges.atoms, edges.offsets),
    )
    if math.isinf(max_value):
        counts = [len(cell.frac), len(edges.atoms), len(triangles.atoms), len(tets.atoms)]
        if counts[0] - counts[1] + counts[2] - counts[3] != 0 or 2 * counts[3] != counts[2]:
            raise _Degenerate(f"simplex counts {counts} are not a triangulation of the 3-torus")
    values = [np.zeros(len(cell.frac)), edge_values, tri_values, tet_values]
    bounds = [np.empty((len(cell.frac), 0), dtype=np.int64), edges.atoms.astype(np.int64), tri_faces, tet_faces]
    return values, bounds, skin


def periodic_alpha_filtration(
    positions: np.ndarray,
    cell: np.ndarray,
    max_value: float = math.inf,
    time_limit: float = math.inf,
    max_points: int = 2_000_000,
    seed: int = 0,
) -> Filtration:
    """The periodic alpha filtration of atoms at ``positions`` (Å) in the periodic ``cell``
    (rows are the lattice vectors, Å; any basis), values in squared radii (Å²).

    ``max_value`` truncates the filtration (exact below it); ``time_limit`` (s) is checked
    between stages and raises :class:`Deadline`; ``max_points`` bounds the image points
    (cells with large voids need many); ``seed`` seeds the jitter of a degenerate frame.
    Raises :class:`PeriodicAlphaError` for input it cannot handle, with the reason.
    """
    deadline = time.monotonic() + time_limit
    base = _Cell.of(positions, cell)
    jittered = False
    try:
        values, bounds, skin = _filtration(base, max_value, deadline, max_points)
    except _Degenerate:
        jittered = True
        try:
            values, bounds, skin = _filtration(base.jittered(seed), max_value, deadline, max_points)
        except _Degenerate as exc:
            raise PeriodicAlphaError(f"degenerate even after a {JITTER:g} Å jitter: {exc}") from None
    _check(deadline)
    dims, vals, indptr, indices = boundary_matrix(values, bounds, max_value)
    return Filtration(dims, vals, indptr, indices, jittered, float(max_value), float(skin))
