"""Real DFT carbon frames (../shared/data/real-carbon): every frame gets PH from the native engine
(triclinic, hexagonal and 4-atom cells included), equal to HomCloud where HomCloud runs; the
homcloud engine survives the frames that make HomCloud raise, abort or hang."""

import os
import shutil

import ase.io
import numpy as np
import pytest
from homcloud.hera_bottleneck import bottleneck_distance

from phstore import open_store
from phstore.compat import import_homcloud
from phstore.descriptors import PH, PHParams
from phstore.featurize import featurize
from phstore.ingest import ingest
from phstore.isolation import ChildCrashed, ChildError, ChildTimeout, IsolatedRunner
from phstore.ph import periodic_alpha_diagram
from phstore.ph.homcloud import replicate
from phstore.store import DONE, FAILED, FeatureStore
from phstore.verify import verify_store
from tests.helpers import assert_float32_of

pytestmark = pytest.mark.real_data
DISORDERED = "aC_wang2024nep_test_disordered.extxyz"
FILES = {
    DISORDERED: 406,
    "aC_CGAP17_castepLDA_64at_metatrain.extxyz": 20,
    "crystal_wang2024nep_test.extxyz": 44,
    "crystal_CGAP17_castepLDA_graphite4at_metatrain.extxyz": 100,
    "crystal_Wen2020_vasp_diamond_graphite.extxyz": 165,
}
# index in the file: (atoms, cell) -- what HomCloud does with the cell as it is
CUBIC_125 = 142  # 125 atoms, 10.34 Å cube: accepted as it is
ELONGATED_64 = 340  # 64 atoms, 7.53×7.53×22.53 Å: aborts or runs for hours as it is
SMALL_27 = 89  # 27 atoms, 5.4 Å cube: "Points are too few"
FLAT_36 = 92  # 36 atoms, 6.25×6.25×8.34 Å: aborts when replicated 2×2×1
FRAMES = [CUBIC_125, ELONGATED_64, SMALL_27, FLAT_36]
HOMCLOUD = PH(PHParams(engine="homcloud", min_side=10.0))  # 10 Å leaves the 125-atom cube as it is


@pytest.fixture(scope="module")
def frames(real_carbon):
    return {i: ase.io.read(real_carbon / DISORDERED, i) for i in FRAMES}


@pytest.fixture(scope="module")
def store(frames, tmp_path_factory, client):
    """The four frames featurized with both engines."""
    tmp = tmp_path_factory.mktemp("real")
    ase.io.write(tmp / "subset.xyz", [frames[i] for i in FRAMES], format="extxyz")
    path = tmp / "s.zarr"
    ingest(path, [tmp / "subset.xyz"], chunk_size=1, progress=False)
    for ph in (PH(), HOMCLOUD):
        report = featurize(path, ph, client, progress=False)
        assert not report.failures and not report.errors
    return open_store(path)


def direct_h1(atoms, factor):
    """HomCloud in this process on the tiled cell; numpy for the histogram (pairs of persistence
    above the descriptor's threshold)."""
    L = np.diag(atoms.cell.array)
    pd = (
        import_homcloud()
        .PDList.from_alpha_filtration(
            replicate(atoms.positions, L, factor), periodicity=[(0, side) for side in L * factor]
        )
        .dth_diagram(1)
    )
    keep = pd.deaths - pd.births > PHParams.min_persistence
    hist, _, _ = np.histogram2d(pd.births[keep], pd.deaths[keep], bins=128, range=[[0, 8], [0, 8]])
    return np.column_stack([pd.births, pd.deaths]), hist / hist.sum()


def stored(store, atoms, group):
    """The snapshot of ``atoms`` in its collection: histogram, factor and finite H1 pairs."""
    coll = atoms.get_chemical_formula()
    d = store.descriptor(coll, group).isel(snapshot=0).load()
    assert d.status.item() == DONE
    rec, _ = store.records(coll, group, 0)
    h1 = rec[(rec[:, 1] == 1) & np.isfinite(rec[:, 3])][:, 2:]
    return d.histogram.values, tuple(d.supercell.values.tolist()), h1


def canon(pairs):
    return pairs[np.lexsort(np.round(pairs, 9).T[::-1])]


def bottleneck(a, b):
    a, b = a[np.isfinite(a[:, 1])], b[np.isfinite(b[:, 1])]
    return bottleneck_distance(a[:, 0], a[:, 1], b[:, 0], b[:, 1], 0.0)


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_real_frame_gets_native_ph(real_carbon, name):
    """Every frame of every file, as a user's featurize computes it (cells as they are: cubic,
    elongated, hexagonal, sheared, 4 atoms, slabs with vacuum); the whole filtration of the
    crystals has the 3-torus' essential classes."""
    frames = ase.io.read(real_carbon / name, ":")
    assert len(frames) == FILES[name]
    for i, atoms in enumerate(frames):
        res = PH().compute(atoms)
        assert res.error is None, (name, i, res.error)
        assert abs(float(res.values["histogram"].sum()) - 1) < 1e-5
        if name.startswith("crystal"):
            d = periodic_alpha_diagram(atoms.positions, atoms.cell.array)
            assert [int(np.isinf(d.degree(k)[:, 1]).sum()) for k in (0, 1, 2)] == [1, 3, 3], (name, i)


def test_native_equals_homcloud_on_real_cubic_frames(real_carbon):
    """The 125- and 216-atom cubes HomCloud takes as they are: same pairs, bottleneck ≤ 1e-10 Å²."""
    frames = ase.io.read(real_carbon / DISORDERED, ":")
    cubes = [a for a in frames if len(a) >= 125 and np.allclose(a.cell.array, np.eye(3) * a.cell[0, 0])][::6]
    assert len(cubes) >= 8
    for atoms in cubes:
        L = np.diag(atoms.cell.array)
        pdlist = import_homcloud().PDList.from_alpha_filtration(atoms.positions % L, periodicity=[(0, x) for x in L])
        mine = periodic_alpha_diagram(atoms.positions, atoms.cell.array)
        for d in (0, 1, 2):
            pd = pdlist.dth_diagram(d)
            theirs = np.column_stack([pd.births, pd.deaths])
            assert np.isfinite(mine.degree(d)[:, 1]).sum() == len(theirs)
            assert bottleneck(mine.degree(d), theirs) <= 1e-10


def test_stored_native_diagrams_are_the_cells_own(store, frames):
    """Native: every cell as it is, no supercell; the 125-atom cube equals HomCloud on it."""
    for i in FRAMES:
        _, factor, _ = stored(store, frames[i], PH().group)
        assert factor == (1, 1, 1)
    hist, _, h1 = stored(store, frames[CUBIC_125], PH().group)
    pairs, expected = direct_h1(frames[CUBIC_125], np.array((1, 1, 1)))
    np.testing.assert_allclose(canon(h1), canon(pairs[pairs[:, 1] <= 8.0]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hist, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("index,factor", [(CUBIC_125, (1, 1, 1)), (ELONGATED_64, (3, 3, 1)), (SMALL_27, (2, 2, 2))])
def test_homcloud_engine_stored_equals_direct_homcloud_and_numpy(store, frames, index, factor):
    hist, used, h1 = stored(store, frames[index], HOMCLOUD.group)
    assert used == factor
    pairs, expected = direct_h1(frames[index], np.array(factor))
    np.testing.assert_allclose(canon(h1), canon(pairs), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hist, expected, rtol=1e-6, atol=1e-9)


def test_replicated_real_cell_gives_the_same_histogram(frames):
    """The 2×2×2 supercell's normalised histogram agrees with the cell's (a cover: only
    cell-sized cycles differ)."""
    atoms = frames[CUBIC_125]
    one = PH().compute(atoms)
    eight = PH(PHParams(min_side=2 * atoms.cell[0, 0] - 1e-3)).compute(atoms)
    assert tuple(eight.values["supercell"]) == (2, 2, 2)
    assert np.abs(one.values["histogram"] - eight.values["histogram"]).sum() < 0.02


def test_flat_cell_abort_is_survived_by_growing(store, frames):
    """With no minimum side the 36-atom cell starts at 2×2×1, which aborts HomCloud; the homcloud
    engine grows the near-cube and succeeds (measured here), recording the factor it used."""
    res = PH(PHParams(engine="homcloud")).compute(frames[FLAT_36])
    assert res.error is None
    assert np.prod(res.values["supercell"]) > 4
    _, default_factor, _ = stored(store, frames[FLAT_36], HOMCLOUD.group)
    assert default_factor == (2, 2, 2)


def test_homcloud_abort_in_a_worker_fails_only_that_frame(store, client, tmp_path):
    """Without room to grow (max_atoms 144) the flat 36-atom cell aborts HomCloud at 2×2×1 inside a
    Dask worker's child: that frame (and the 27-atom one HomCloud raises on) is failed with the
    reason, the others are computed, the workers live on, and the store verifies."""
    path = tmp_path / "s.zarr"
    shutil.copytree(store.path, path)
    pids = client.run(os.getpid)
    ph = PH(PHParams(engine="homcloud", max_atoms=144))
    report = featurize(path, ph, client, progress=False)
    status = {c: open_store(path).descriptor(c, ph.group).load() for c in ("C36", "C27", "C64", "C125")}
    assert "HomCloud aborted (supercell (2, 2, 1))" in status["C36"].error.item()
    assert "Points are too few" in status["C27"].error.item()
    assert status["C36"].status.item() == status["C27"].status.item() == FAILED
    assert status["C64"].status.item() == status["C125"].status.item() == DONE
    assert len(report.failures) == 2 and not report.errors
    assert client.run(os.getpid) == pids
    assert verify_store(path, progress=False).ok


def test_the_raw_cells_really_fail_in_homcloud(frames):
    """The failures the homcloud engine works around are real: unreplicated, these cells raise or die."""
    fn = "phstore.ph.homcloud:persistence_diagrams"
    r = IsolatedRunner(preload=("homcloud.interface",), time_limit=20)
    try:
        a = frames[SMALL_27]
        with pytest.raises(ChildError, match="Points are too few"):
            r.call(fn, a.positions % np.diag(a.cell.array), np.diag(a.cell.array), (1,))
        a = frames[ELONGATED_64]
        with pytest.raises((ChildCrashed, ChildTimeout)):
            r.call(fn, a.positions % np.diag(a.cell.array), np.diag(a.cell.array), (1,))
    finally:
        r.close()


def test_whole_directory_ingests_one_dataset_per_file_that_nothing_mixes(real_carbon, tmp_path, client):
    """`phstore ingest real-carbon/` as a user runs it: every file is its own dataset, with its
    forces and labels; training and maps refuse the 64-atom collection (three files, CASTEP and
    VASP-like energies) until one dataset is chosen, and a pattern that joins them is refused by
    the spread check, naming the extreme frames."""
    from phstore.analysis.maps import descriptor_map
    from phstore.descriptors import SOAP
    from phstore.descriptors.params import SOAPParams
    from phstore.training.data import TrainingData
    from phstore.training.split import Split

    path = tmp_path / "s.zarr"
    report = ingest(path, [real_carbon], progress=False)
    assert not report.rejected and not report.unlabelled
    assert report.n_added + report.duplicates == sum(FILES.values())
    store = open_store(path)
    assert store.n_snapshots("C216") == 9 and store.n_snapshots("C72") == 81
    c64 = store.frames("C64")
    datasets = {f"real-carbon/{name[: -len('.extxyz')]}" for name in FILES}
    assert set(c64.dataset.values.tolist()) == {
        d for d in datasets if "disordered" in d or "64at" in d or "Wen2020" in d
    }
    gap = store.sel("C64", config_type="bulk_amo")
    assert gap.sizes["snapshot"] == 20 and set(gap.dataset.values.tolist()) == {
        "real-carbon/aC_CGAP17_castepLDA_64at_metatrain"
    }
    first = ase.io.read(real_carbon / "aC_CGAP17_castepLDA_64at_metatrain.extxyz", 0)
    order = np.argsort(first.numbers, kind="stable")
    np.testing.assert_allclose(gap["forces"].values[0], first.get_forces()[order])
    assert "LDA" in gap["labels"].values[0]
    assert store.sel("C64", density=1.4964, density_tol=1e-3).sizes["snapshot"] >= 20

    with pytest.raises(ValueError, match="3 datasets, which may not be comparable"):
        TrainingData.select(store, "C64", None, Split())
    with pytest.raises(ValueError, match=r"span -155\.\d+ \(C64 snapshot \d+: .*aC_CGAP17.*wider than 10"):
        TrainingData.select(store, "C64", "real-carbon/*", Split())
    one = TrainingData.select(store, "C64", "real-carbon/aC_CGAP17_castepLDA_64at_metatrain", Split())
    assert one.counts["used"] == 20 and np.ptp(one.target) < 2

    assert featurize(path, SOAP(SOAPParams(n_max=2, l_max=2)), client, collections=["C64"], progress=False).computed
    rw = FeatureStore(path, mode="r+")
    with pytest.raises(ValueError, match="energies of 3 datasets"):
        descriptor_map(rw, "C64", "soap", perplexities=())
    mapped = descriptor_map(rw, "C64", "soap", perplexities=(), dataset="real-carbon/crystal_Wen2020*")
    assert mapped.n == int((c64.dataset.values == "real-carbon/crystal_Wen2020_vasp_diamond_graphite").sum())


@pytest.fixture(scope="module")
def disordered(real_carbon, tmp_path_factory, client, schnet_model):
    """All 405 distinct disordered frames (8 cell sizes → 8 collections) with SOAP and the
    embeddings of the session's small trained SchNet."""
    from phstore.descriptors import SOAP, SchNet

    path = tmp_path_factory.mktemp("disordered") / "s.zarr"
    ingest(path, [real_carbon / DISORDERED], chunk_size=16, progress=False)
    for descriptor in (SOAP(), SchNet.from_model(schnet_model)):
        report = featurize(path, descriptor, client, progress=False)
        assert report.computed == 405, "406 frames, one a duplicate"
        assert not report.failures and not report.errors
    return open_store(path), schnet_model


def test_stored_soap_equals_dscribe_on_real_frames(disordered):
    from dscribe.descriptors import SOAP as DScribeSOAP

    from phstore.descriptors import SOAP

    store, _ = disordered
    soap = DScribeSOAP(species=["C"], r_cut=4.1, n_max=8, l_max=9, sigma=0.16, periodic=True)
    assert len(store.collections) == 8
    for coll in store.collections:
        ds = store.descriptor(coll, SOAP().group).load()
        for i, atoms in enumerate(store.atoms(coll, slice(0, store.n_snapshots(coll)))):
            expected = soap.create(atoms)
            assert_float32_of(ds["per_atom"].values[i], expected)
            np.testing.assert_allclose(ds["mean"].values[i], expected.mean(axis=0), rtol=1e-6, atol=1e-7)


def test_stored_schnet_equals_the_checkpoint_run_directly(disordered):
    from phstore.descriptors import SchNet
    from tests.test_schnet import direct_embedding

    store, model = disordered
    for coll in ("C27", "C64", "C216"):
        ds = store.descriptor(coll, SchNet.from_model(model).group).load()
        frames = store.atoms(coll, slice(0, store.n_snapshots(coll)))
        for i in range(0, len(frames), 7):
            expected = direct_embedding(model, frames[i])
            np.testing.assert_allclose(ds["per_atom"].values[i], expected, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(ds["mean"].values[i], expected.mean(axis=0), rtol=1e-4, atol=1e-5)


def test_real_selection_by_density_is_lazy_and_has_both(disordered):
    store, _ = disordered
    ds = store.sel("C64", density=[1.4964, 2.0], density_tol=0.05)
    assert ds.sizes["snapshot"] > 0
    for name in ("soap_mean", "soap_per_atom", "schnet_mean", "schnet_per_atom"):
        assert ds[name].chunks is not None
    assert ds["soap_per_atom"].shape[1:] == (64, 360) and ds["schnet_per_atom"].shape[1:] == (64, 100)


@pytest.fixture(scope="module")
def trained(disordered, client, tmp_path_factory):
    """PH of the three smallest cell sizes (107 frames of 27, 36 and 48 atoms), then models
    trained from the store across cell sizes (random split)."""
    from phstore.training.params import NeuralConfig
    from phstore.training.train import train

    store, _ = disordered
    small = ["C27", "C36", "C48"]
    report = featurize(store.path, PH(), client, collections=small, progress=False)
    assert report.computed == 107 and not report.failures and not report.errors
    out = tmp_path_factory.mktemp("models")
    return store, {
        "ridge": train("ridge", store.path, small, out / "ridge"),
        "cnn": train("cnn", store.path, small, out / "cnn", NeuralConfig.cnn(epochs=3), progress=False),
        "soap-mlp": train(
            "soap-mlp", store.path, store.collections, out / "mlp", NeuralConfig.soap_mlp(epochs=300), progress=False
        ),
    }


def test_models_train_across_cell_sizes_of_real_frames(trained):
    """Every model sees all its cell sizes; Ridge and the SOAP MLP predict better than the spread
    of the energies (the CNN gets 3 epochs here: finite numbers only)."""
    store, models = trained
    for kind, model in models.items():
        seen = model.provenance["collections"]
        assert seen == (store.collections if kind == "soap-mlp" else ["C27", "C36", "C48"])
        assert all(len(model.train[c]) + len(model.test[c]) == store.n_snapshots(c) for c in seen)
        test = model.metrics["test"]
        energies = np.concatenate([store.frames(c)["energy_per_atom"].values[model.test[c]] for c in seen])
        assert test["n"] == len(energies) and np.isfinite(test["rmse_mev"])
        if kind != "cnn":  # Ridge on these 107 frames: 0.48-0.67 of the spread over splits 0-4, either engine
            assert test["rmse_mev"] < 0.75 * energies.std() * 1000, (kind, test["rmse_mev"], energies.std())


def test_analysis_runs_on_real_frames(trained, client, tmp_path):
    """Maps of PH, SOAP and SchNet, the Ridge map and inverse analysis on real 48-atom frames."""
    from phstore.analysis.inverse import inverse_analysis
    from phstore.analysis.maps import analyze_maps
    from phstore.analysis.ridge_map import ridge_map

    store, models = trained
    reports = analyze_maps(store.path, "C48", ("ph", "soap", "schnet"), tmp_path, perplexities=(10,))
    assert [r.descriptor for r in reports] == ["ph", "soap", "schnet"] and all(r.n == 44 for r in reports)
    assert all(
        0.5 < s["trustworthiness"] <= 1 and 0 <= s["roughness"] < 1.5 for r in reports for s in r.scores.values()
    )
    grid, png = ridge_map(models["ridge"].path, tmp_path / "ridge-map.png")
    assert png.exists() and grid.values.shape == (128, 128)
    high, low = np.quantile(grid.values, [0.998, 0.002])
    report = inverse_analysis(
        models["ridge"].path, store.path, "C48", client, [0, 1], high, low, out=tmp_path, progress=False
    )
    assert report.pairs and not report.failed
    assert all(set(p.atoms) <= set(range(48)) for p in report.pairs)
    assert sum(int((t > 0).sum()) for t in report.tags.values()) > 0
