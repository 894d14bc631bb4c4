"""The PH descriptor: its histogram against numpy, both engines against each other and direct
HomCloud, the persistence threshold, HomCloud's supercell rule, failures (the engine itself is
tested in test_ph_engine.py, the invariances in the contract suite, test_contract.py)."""

import numpy as np
import pytest
from ase.build import bulk

from phstore.compat import import_homcloud
from phstore.descriptors import PHParams
from phstore.descriptors.ph import PH, lattice_supercell
from phstore.ph import periodic_alpha_diagram
from phstore.ph.homcloud import grow, replicate, supercell
from tests.helpers import carbon_frame
from tests.test_ph_engine import unimodular


def direct_h1(atoms, factor=(1, 1, 1)):
    """HomCloud called here in-process, no phstore code on the path but the tiling."""
    hc = import_homcloud()
    L = np.diag(atoms.cell.array)
    pts = np.mod(atoms.positions, L)
    shifts = np.array([(i, j, k) for i in range(factor[0]) for j in range(factor[1]) for k in range(factor[2])])
    pts = (pts[None] + (shifts * L)[:, None]).reshape(-1, 3)
    pd = hc.PDList.from_alpha_filtration(pts, periodicity=[(0, side * f) for side, f in zip(L, factor)]).dth_diagram(1)
    return pd.births, pd.deaths


def numpy_histogram(births, deaths, min_persistence=0.0):
    keep = deaths - births > min_persistence
    hist, _, _ = np.histogram2d(births[keep], deaths[keep], bins=128, range=[[0, 8], [0, 8]])
    return hist / hist.sum()


def finite_h1(result):
    rec = result.records
    pairs = rec[(rec[:, 0] == 1) & np.isfinite(rec[:, 2])][:, 1:]
    return pairs[np.lexsort(pairs.T[::-1])]


@pytest.fixture(scope="module")
def homcloud_ph():
    return PH(PHParams(engine="homcloud"), time_limit=60)


def test_native_histogram_is_numpys_of_the_engines_diagram():
    atoms = carbon_frame(5, density=1.5, seed=2)
    res = PH().compute(atoms)
    assert res.error is None and res.values["jittered"] == 0
    np.testing.assert_array_equal(res.values["supercell"], [1, 1, 1])
    h1 = periodic_alpha_diagram(atoms.positions, atoms.cell.array).degree(1)  # whole filtration
    h1 = h1[np.isfinite(h1[:, 1])]
    np.testing.assert_allclose(res.values["histogram"], numpy_histogram(h1[:, 0], h1[:, 1], 1e-5), rtol=1e-6, atol=1e-9)
    assert res.values["histogram"].shape == (128, 128) and abs(res.values["histogram"].sum() - 1) < 1e-5
    # truncated at the histogram's bound: pairs dying below 8 Å² are stored exactly, later ones as inf
    stored = finite_h1(res)
    np.testing.assert_array_equal(stored, h1[h1[:, 1] <= 8.0][np.lexsort(h1[h1[:, 1] <= 8.0].T[::-1])])


def test_engines_agree_on_an_orthorhombic_cell(homcloud_ph):
    atoms = carbon_frame(5, density=2.4, seed=5)
    native, hc = PH().compute(atoms), homcloud_ph.compute(atoms)
    births, deaths = direct_h1(atoms)
    direct = np.column_stack([births, deaths])
    for res in (native, hc):
        np.testing.assert_allclose(finite_h1(res), direct[np.lexsort(direct.T[::-1])], rtol=0, atol=1e-12)
        np.testing.assert_allclose(res.values["histogram"], numpy_histogram(births, deaths, 1e-5), rtol=1e-6, atol=1e-9)
    for degree, n_essential in ((0, 1), (1, 3), (2, 3)):  # Betti numbers of the 3-torus
        assert np.isinf(hc.records[hc.records[:, 0] == degree][:, 2]).sum() == n_essential
    assert PH().group != homcloud_ph.group  # the engine is in the provenance key


def test_triclinic_cell_native_equals_its_orthogonal_basis(homcloud_ph):
    atoms = carbon_frame(4, seed=4)
    sheared = unimodular(atoms, [[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    res = PH().compute(sheared)
    assert res.error is None
    np.testing.assert_allclose(res.values["histogram"], PH().compute(atoms).values["histogram"], atol=1e-7)
    failed = homcloud_ph.compute(sheared)
    assert failed.values is None and "triclinic" in failed.error and "native" in failed.error


def test_persistence_threshold_makes_a_perfect_crystal_reproducible(homcloud_ph):
    """Perfect diamond: the native engine flags its jitter; above the threshold both engines give
    one histogram, HomCloud's pairs below it come and go."""
    atoms = bulk("C", "diamond", a=3.567, cubic=True).repeat(3)
    native = PH().compute(atoms)
    assert native.values["jittered"] == 1
    hist = [homcloud_ph.compute(atoms).values["histogram"] for _ in range(2)]
    np.testing.assert_array_equal(hist[0], hist[1])
    np.testing.assert_allclose(native.values["histogram"], hist[0], atol=1e-7)
    births, deaths = direct_h1(atoms)
    np.testing.assert_allclose(hist[0], numpy_histogram(births, deaths, 1e-5), atol=1e-9)


def test_min_side_replicates_along_the_lattice_vectors():
    atoms = unimodular(carbon_frame(4, seed=6), [[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    side = atoms.cell.cellpar()[0]
    assert lattice_supercell(atoms.cell.array, 0.0) == (1, 1, 1)
    heights = atoms.get_volume() / np.linalg.norm(np.cross(atoms.cell[[1, 2, 0]], atoms.cell[[2, 0, 1]]), axis=1)
    factor = np.array(lattice_supercell(atoms.cell.array, 2 * heights.max()))
    assert (factor * heights >= 2 * heights.max()).all() and ((factor - 1) * heights < 2 * heights.max()).all()
    res = PH(PHParams(min_side=1.5 * side)).compute(atoms)
    np.testing.assert_array_equal(res.values["supercell"], lattice_supercell(atoms.cell.array, 1.5 * side))
    one = PH().compute(atoms).values["histogram"]
    assert np.abs(res.values["histogram"] - one).sum() < 0.05  # a cover: only cell-sized cycles differ


def test_failures_are_clear(homcloud_ph):
    atoms = carbon_frame(4)
    slab = atoms.copy()
    slab.pbc = [True, True, False]
    assert "not periodic in all three directions" in PH().compute(slab).error
    twin = atoms.copy()
    twin.positions[3] = twin.positions[2]
    assert "duplicated atom" in PH().compute(twin).error
    assert "time limit" in PH(time_limit=0.0).compute(atoms).error
    res = PH(PHParams(engine="homcloud"), time_limit=1e-3).compute(carbon_frame(5))
    assert res.values is None and "hung" in res.error
    assert homcloud_ph.compute(carbon_frame(5)).error is None  # the child was replaced
    with pytest.raises(ValueError, match="engine must be one of native, homcloud, not 'gudhi'"):
        PH(PHParams(engine="gudhi"))


def test_homcloud_supercell_rule_makes_near_cubes():
    assert supercell(np.array([12.0, 12.0, 12.0])) == (1, 1, 1)
    assert supercell(np.array([7.53, 7.53, 22.53])) == (3, 3, 1)  # the measured hanging cells
    assert supercell(np.array([6.25, 6.25, 8.34]), min_side=10.0) == (2, 2, 2)
    rng = np.random.default_rng(1)
    for _ in range(200):
        L = rng.uniform(2, 30, 3)
        f = supercell(L, min_side=rng.uniform(0, 20))
        sides = np.asarray(f) * L
        assert sides.max() / sides.min() < 2
        g = grow(L, f)
        assert (np.asarray(g) * L).min() > sides.min() and (np.asarray(g) * L).max() / (np.asarray(g) * L).min() < 2


def test_replicate_tiles_the_wrapped_cell():
    atoms = carbon_frame(3)
    L = np.diag(atoms.cell.array)
    pts = replicate(atoms.positions - 3 * L, L, (2, 1, 3))
    assert pts.shape == (len(atoms) * 6, 3)
    assert (pts >= 0).all() and (pts < L * [2, 1, 3]).all()


def test_homcloud_engine_grows_a_too_small_cell(homcloud_ph):
    atoms = carbon_frame(2, density=2.0)  # 8 atoms in a 4 Å box: "Points are too few"
    res = homcloud_ph.compute(atoms)
    assert res.error is None and np.prod(res.values["supercell"]) > 1
    births, _ = direct_h1(atoms, tuple(res.values["supercell"]))
    assert len(finite_h1(res)) == len(births)
