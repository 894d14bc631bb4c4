"""phstore's periodic alpha engine (phstore.ph) against independent computations: HomCloud by
bottleneck distance (hera, exact), the same lattice in other bases, k-fold supercells, the
periodic minimum spanning tree, the topology of the 3-torus, truncation, degenerate crystals.
The frames are tiny and generated; the real frames are in test_real_data.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, make_supercell
from ase.neighborlist import neighbor_list
from homcloud.hera_bottleneck import bottleneck_distance
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

from phstore.compat import import_homcloud
from phstore.ph import Deadline, periodic_alpha_diagram, periodic_alpha_filtration
from tests.helpers import carbon_frame

TORUS = {0: 1, 1: 3, 2: 3}  # Betti numbers of the 3-torus in degrees 0-2


def bottleneck(a: np.ndarray, b: np.ndarray) -> float:
    """Exact bottleneck distance (hera, via HomCloud) between the finite pairs of two diagrams."""
    a, b = a[np.isfinite(a[:, 1])], b[np.isfinite(b[:, 1])]
    return bottleneck_distance(a[:, 0], a[:, 1], b[:, 0], b[:, 1], 0.0)


def homcloud_diagram(atoms: Atoms) -> dict[int, np.ndarray]:
    """HomCloud's periodic alpha diagrams of an orthorhombic cell, in this process (boxes here
    are ones HomCloud accepts)."""
    lengths = np.diag(atoms.cell.array)
    pdlist = import_homcloud().PDList.from_alpha_filtration(
        atoms.positions % lengths, periodicity=[(0, x) for x in lengths]
    )
    out = {}
    for d in (0, 1, 2):
        pd = pdlist.dth_diagram(d)
        out[d] = np.concatenate(
            [
                np.column_stack([pd.births, pd.deaths]),
                np.column_stack([pd.essential_births, np.full(len(pd.essential_births), np.inf)]),
            ]
        )
    return out


def native(atoms: Atoms, **kw):
    return periodic_alpha_diagram(atoms.positions, atoms.cell.array, **kw)


def random_box(lengths, density=0.11, seed=0) -> Atoms:
    rng = np.random.default_rng(seed)
    n = int(density * np.prod(lengths))
    return Atoms(f"C{n}", positions=rng.uniform(0, 1, (n, 3)) * lengths, cell=np.diag(lengths), pbc=True)


ORTHORHOMBIC = {
    "a-C 125 at 1.5": lambda: carbon_frame(5, density=1.5, seed=1),
    "a-C 216 at 2.4": lambda: carbon_frame(6, density=2.4, seed=2),
    "a-C 216 at 3.5": lambda: carbon_frame(6, density=3.5, seed=3, jitter=0.25),
    "random points, 10×11×13 Å box": lambda: random_box([10.0, 11.0, 13.0]),
}


@pytest.mark.parametrize("name", sorted(ORTHORHOMBIC))
def test_equals_homcloud_by_bottleneck_distance(name):
    atoms = ORTHORHOMBIC[name]()
    mine, theirs = native(atoms), homcloud_diagram(atoms)
    assert not mine.jittered
    for d in (0, 1, 2):
        a, b = mine.degree(d), theirs[d]
        # equal counts: translates of one simplex never differ by rounding (that makes spurious pairs)
        assert np.isfinite(a[:, 1]).sum() == np.isfinite(b[:, 1]).sum(), d
        assert np.isinf(a[:, 1]).sum() == np.isinf(b[:, 1]).sum() == TORUS[d]
        assert bottleneck(a, b) <= 1e-10, (d, bottleneck(a, b))


def unimodular(atoms: Atoms, matrix) -> Atoms:
    """The same periodic structure in another basis of its lattice (positions untouched)."""
    matrix = np.asarray(matrix)
    assert round(abs(np.linalg.det(matrix))) == 1
    out = atoms.copy()
    out.set_cell(matrix @ atoms.cell.array, scale_atoms=False)
    return out


def rotated(atoms: Atoms, seed: int) -> Atoms:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ q.T, scale_atoms=False)
    out.positions = atoms.positions @ q.T
    return out


@pytest.mark.parametrize("how", ["shear", "unimodular", "rotation", "unimodular and rotation"])
def test_other_bases_of_the_same_lattice_give_the_same_diagram(how):
    atoms = carbon_frame(5, density=2.4, seed=5)
    other = {
        "shear": lambda a: unimodular(a, [[1, 0, 0], [1, 1, 0], [0, -2, 1]]),
        "unimodular": lambda a: unimodular(a, [[1, 2, 0], [0, 1, 3], [1, 2, 1]]),
        "rotation": lambda a: rotated(a, 1),
        "unimodular and rotation": lambda a: rotated(unimodular(a, [[1, 2, 0], [0, 1, 3], [1, 2, 1]]), 2),
    }[how](atoms)
    a, b = native(atoms), native(other)
    for d in (0, 1, 2):
        assert len(a.degree(d)) == len(b.degree(d))
        assert bottleneck(a.degree(d), b.degree(d)) <= 1e-10


def sorted_values(atoms: Atoms) -> dict[int, np.ndarray]:
    f = periodic_alpha_filtration(atoms.positions, atoms.cell.array)
    return {d: np.sort(f.values[f.dims == d]) for d in range(4)}


@pytest.mark.parametrize("factor", [(2, 2, 2), (3, 1, 1)])
def test_supercell_filtration_is_the_cells_multiset_times_k(factor):
    atoms = carbon_frame(4, density=2.4, seed=6)
    one, many = sorted_values(atoms), sorted_values(atoms.repeat(factor))
    k = int(np.prod(factor))
    for d in range(4):
        np.testing.assert_allclose(many[d], np.repeat(one[d], k), rtol=1e-12, atol=1e-12)


def distorted_graphite(seed: int = 0) -> Atoms:
    """AB graphite's 4-atom hexagonal cell, each atom moved by ~0.03 Å (no four points cocircular)."""
    a, c = 2.46, 6.70
    cell = np.array([[a, 0, 0], [-a / 2, a * math.sqrt(3) / 2, 0], [0, 0, c]])
    frac = np.array([[0, 0, 0.25], [0, 0, 0.75], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    atoms = Atoms("C4", scaled_positions=frac, cell=cell, pbc=True)
    atoms.positions += np.random.default_rng(seed).normal(scale=0.03, size=(4, 3))
    return atoms


def test_hexagonal_cell_equals_its_orthogonal_supercell():
    """The 4-atom hexagonal cell and the 8-atom orthohexagonal cell of the same graphite (not a
    diagonal repeat): values of the supercell are the cell's multiset twice."""
    atoms = distorted_graphite()
    ortho = make_supercell(atoms, [[1, 0, 0], [1, 2, 0], [0, 0, 1]])
    assert abs(ortho.cell.angles() - 90).max() < 1e-9
    one, two = sorted_values(atoms), sorted_values(ortho)
    for d in range(4):
        np.testing.assert_allclose(two[d], np.repeat(one[d], 2), rtol=1e-12, atol=1e-12)


def test_h0_is_the_periodic_minimum_spanning_tree():
    """Finite H0 deaths are (half the edge lengths)² of the minimum spanning tree of the periodic
    neighbour graph (ASE's minimum-image neighbour list, scipy's MST)."""
    atoms = rotated(unimodular(carbon_frame(5, density=2.0, seed=7), [[1, 1, 0], [0, 1, 0], [0, 0, 1]]), 3)
    i, j, dist = neighbor_list("ijd", atoms, 4.0)
    graph = coo_matrix((dist, (i, j)), shape=(len(atoms), len(atoms))).tocsr()  # duplicates: keep the shortest
    graph = coo_matrix((dist, (i, j)), shape=(len(atoms), len(atoms)))
    shortest = {}
    for a, b, w in zip(i, j, dist):
        shortest[(a, b)] = min(w, shortest.get((a, b), np.inf))
    rows, cols = zip(*shortest)
    graph = coo_matrix((list(shortest.values()), (rows, cols)), shape=(len(atoms), len(atoms))).tocsr()
    assert connected_components(graph)[0] == 1
    mst = minimum_spanning_tree(graph).data
    h0 = native(atoms).degree(0)
    np.testing.assert_allclose(np.sort(h0[np.isfinite(h0[:, 1]), 1]), np.sort((mst / 2) ** 2), rtol=1e-12)


def graphene_sheet() -> Atoms:
    """A flat 3×3 graphene sheet (in-plane distortion only) with 12 Å of vacuum."""
    a = 2.46
    cell = np.array([[a, 0, 0], [-a / 2, a * math.sqrt(3) / 2, 0], [0, 0, 12.0]])
    sheet = Atoms("C2", scaled_positions=[[0, 0, 0.5], [1 / 3, 2 / 3, 0.5]], cell=cell, pbc=True).repeat((3, 3, 1))
    sheet.positions[:, :2] += np.random.default_rng(4).normal(scale=0.03, size=(len(sheet), 2))
    return sheet


TORUS_CASES = {
    "amorphous cube": lambda: carbon_frame(4, seed=8),
    "sheared cell": lambda: unimodular(carbon_frame(4, seed=9), [[1, 0, 0], [2, 1, 0], [0, 0, 1]]),
    "hexagonal 4-atom graphite": distorted_graphite,
    "one atom (simple cubic)": lambda: Atoms("C", positions=[[0.3, 0.2, 0.1]], cell=np.eye(3) * 2.0, pbc=True),
    "two atoms, triclinic": lambda: Atoms(
        "C2", positions=[[0, 0, 0], [0.9, 1.1, 0.7]], cell=[[2.1, 0, 0], [0.6, 2.3, 0], [0.4, -0.3, 2.5]], pbc=True
    ),
    "graphene sheet in vacuum": graphene_sheet,
}


@pytest.mark.parametrize("name", sorted(TORUS_CASES))
def test_essential_classes_and_euler_characteristic_of_the_torus(name):
    atoms = TORUS_CASES[name]()
    f = periodic_alpha_filtration(atoms.positions, atoms.cell.array)
    v, e, t, tets = f.counts
    assert v == len(atoms) and v - e + t - tets == 0
    d = native(atoms)
    for degree, betti in TORUS.items():
        assert np.isinf(d.degree(degree)[:, 1]).sum() == betti, degree


@pytest.mark.parametrize("name,limit", [("a-C 125 at 1.5", 2.0), ("graphene sheet in vacuum", 8.0)])
def test_truncation_is_exact_for_pairs_that_die_below_it(name, limit):
    atoms = graphene_sheet() if name.startswith("graphene") else ORTHORHOMBIC[name]()
    full, cut = native(atoms), native(atoms, max_value=limit)
    assert cut.max_value == limit and math.isinf(full.max_value)
    dies = full.rows[full.rows[:, 2] <= limit]
    np.testing.assert_array_equal(cut.rows[np.isfinite(cut.rows[:, 2])], dies)
    alive = full.rows[(full.rows[:, 1] <= limit) & (full.rows[:, 2] > limit)]
    np.testing.assert_array_equal(cut.rows[np.isinf(cut.rows[:, 2])][:, :2], alive[:, :2])
    assert sum(cut.counts) < sum(full.counts)


def test_perfect_crystal_is_jittered_reproducibly_and_matches_homcloud():
    """Perfect diamond is degenerate (cospherical points): computed with a seeded jitter,
    flagged, the same on every call; above a persistence of 1e-5 Å² it is HomCloud's diagram."""
    atoms = bulk("C", "diamond", a=3.567, cubic=True).repeat(3)
    first, again = native(atoms), native(atoms)
    assert first.jittered and np.array_equal(first.rows, again.rows)
    theirs = homcloud_diagram(atoms)
    for d in (0, 1, 2):
        a, b = first.degree(d), theirs[d]
        a, b = a[a[:, 1] - a[:, 0] > 1e-5], b[b[:, 1] - b[:, 0] > 1e-5]
        assert np.isfinite(a[:, 1]).sum() == np.isfinite(b[:, 1]).sum()
        assert bottleneck(a, b) <= 1e-6


def test_duplicated_atom_is_degenerate_not_lost():
    """Two atoms on one spot: qhull drops one; the frame is computed again jittered and the
    pair shows as an H0 class dying at once."""
    atoms = carbon_frame(4, seed=10)
    atoms.positions[1] = atoms.positions[0]
    d = native(atoms)
    assert d.jittered and d.counts[0] == len(atoms)
    assert d.degree(0)[:, 1].min() < 1e-12


def test_time_limit_and_bad_cells_raise_clearly():
    atoms = carbon_frame(4)
    with pytest.raises(Deadline):
        native(atoms, time_limit=0.0)
    with pytest.raises(ValueError, match="no volume"):
        periodic_alpha_diagram(atoms.positions, np.diag([10.0, 10.0, 0.0]))
    with pytest.raises(ValueError, match="NaN"):
        periodic_alpha_diagram(atoms.positions * np.nan, atoms.cell.array)
