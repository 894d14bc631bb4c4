"""The PH descriptor against direct HomCloud + numpy, and its supercell rule (its invariances are
in the contract suite, tests/test_contract.py)."""

import numpy as np
import pytest

from phstore.compat import import_homcloud
from phstore.descriptors.ph import PH, PHParams, grow, normalized_histogram, replicate, supercell
from tests.helpers import carbon_frame


def direct_h1(atoms, factor=(1, 1, 1)):
    """HomCloud called here in-process, no phstore code on the path but the tiling."""
    hc = import_homcloud()
    L = np.diag(atoms.cell.array)
    pts = np.mod(atoms.positions, L)
    shifts = np.array([(i, j, k) for i in range(factor[0]) for j in range(factor[1]) for k in range(factor[2])])
    pts = (pts[None] + (shifts * L)[:, None]).reshape(-1, 3)
    pd = hc.PDList.from_alpha_filtration(pts, periodicity=[(0, l * f) for l, f in zip(L, factor)]).dth_diagram(1)
    return pd.births, pd.deaths


def sorted_pairs(result, degree=1):
    rec = result.records
    pairs = rec[rec[:, 0] == degree][:, 1:]
    return pairs[np.lexsort(pairs.T[::-1])]


@pytest.fixture(scope="module")
def ph():
    return PH(PHParams(min_side=0.0), time_limit=60)


def test_supercell_rule_makes_near_cubes():
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


def test_diagram_and_histogram_equal_direct_homcloud_and_numpy(ph):
    atoms = carbon_frame(5, density=2.4)
    res = ph.compute(atoms)
    assert res.error is None
    births, deaths = direct_h1(atoms)
    finite = sorted_pairs(res)
    finite = finite[np.isfinite(finite[:, 1])]
    direct = np.column_stack([births, deaths])
    np.testing.assert_allclose(finite, direct[np.lexsort(direct.T[::-1])], rtol=0, atol=1e-12)
    hist, _, _ = np.histogram2d(births, deaths, bins=128, range=[[0, 8], [0, 8]])
    np.testing.assert_allclose(res.values["histogram"], hist / hist.sum(), rtol=1e-6, atol=1e-9)
    assert res.values["histogram"].shape == (128, 128)
    assert abs(res.values["histogram"].sum() - 1) < 1e-5
    np.testing.assert_array_equal(res.values["supercell"], [1, 1, 1])


def test_essential_pairs_kept_with_infinite_death(ph):
    res = ph.compute(carbon_frame(5))
    for degree, n_essential in ((0, 1), (1, 3), (2, 3)):  # Betti numbers of the 3-torus
        rows = res.records[res.records[:, 0] == degree]
        assert np.isinf(rows[:, 2]).sum() == n_essential


def test_supercell_histogram_agrees_with_unreplicated(ph):
    """Replicating a cell that HomCloud accepts as it is leaves the normalised histogram
    (nearly) unchanged: local rings are copied, only cell-sized cycles differ."""
    atoms = carbon_frame(6, density=2.4, seed=3)
    one = ph.compute(atoms)
    eight = PH(PHParams(min_side=2 * atoms.cell[0, 0] - 1e-3)).compute(atoms)
    np.testing.assert_array_equal(eight.values["supercell"], [2, 2, 2])
    h1, h8 = one.values["histogram"], eight.values["histogram"]
    assert np.abs(h1 - h8).sum() < 0.02  # total variation distance below 1 %
    births, _ = direct_h1(atoms, (2, 2, 2))
    assert (eight.records[:, 0] == 1).sum() - 3 == len(births)


def test_too_small_cell_grows_until_homcloud_accepts(ph):
    atoms = carbon_frame(2, density=2.0)  # 8 atoms in a 4 Å box: "Points are too few"
    res = ph.compute(atoms)
    assert res.error is None
    assert np.prod(res.values["supercell"]) > 1


def test_triclinic_cell_is_a_clear_failure(ph):
    atoms = carbon_frame(4)
    atoms.set_cell(atoms.cell.array + [[0, 0.5, 0], [0, 0, 0], [0, 0, 0]], scale_atoms=False)
    res = ph.compute(atoms)
    assert res.values is None and "triclinic" in res.error


def test_time_limit_fails_the_frame_only(ph):
    res = PH(time_limit=1e-3).compute(carbon_frame(5))
    assert res.values is None and "hung" in res.error
    assert ph.compute(carbon_frame(5)).error is None


def test_normalized_histogram_rejects_empty():
    with pytest.raises(ValueError, match="no finite degree-1 pair"):
        normalized_histogram(np.array([[1, 9.0, 10.0]]), 1, 128, (0.0, 8.0))
