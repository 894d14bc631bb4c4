"""Analysis: maps, the Ridge coefficient map, stable volumes, bond statistics, the CLI."""

import ase.io
import numpy as np
import pytest
from ase.neighborlist import NeighborList

from phstore import open_store
from phstore.analysis.bonds import bond_angles, bond_lengths
from phstore.analysis.inverse import analysed, selected_pairs, stable_volume_atoms
from phstore.analysis.maps import MapParams, descriptor_map, embed, roughness
from phstore.analysis.ridge_map import CoefficientGrid, coefficient_grid
from phstore.descriptors import PH, SOAP
from phstore.featurize import featurize
from phstore.ingest import ingest
from phstore.modeldir import load_model_dir
from phstore.ph.homcloud import persistence_diagrams
from phstore.store import FeatureStore
from phstore.training.train import train
from tests.helpers import carbon_frame, run


def ring_in_a_box(seed: int = 0) -> tuple[np.ndarray, float]:
    """A hexagonal ring (1.42 Å bonds, atoms 0–5) in a 12 Å periodic box with a jittered 3 Å
    lattice of other atoms kept at least 2.6 Å away from it."""
    rng = np.random.default_rng(seed)
    angle = np.arange(6) * np.pi / 3
    ring = np.column_stack([6 + 1.42 * np.cos(angle), 6 + 1.42 * np.sin(angle), np.full(6, 6.0)])
    ring += rng.normal(scale=1e-3, size=ring.shape)  # no four points on one circle
    g = np.arange(4) * 3 + 0.5
    lattice = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) + rng.normal(scale=0.05, size=(64, 3))
    far = lattice[np.linalg.norm(lattice[:, None] - ring[None], axis=2).min(axis=1) > 2.6]
    return np.concatenate([ring, far]), 12.0


def test_stable_volume_of_a_ring_is_the_ring():
    points, L = ring_in_a_box()
    box = np.full(3, L)
    h1 = persistence_diagrams(points, box, (1,))
    h1 = h1[np.isfinite(h1[:, 2])]
    # the ring's loop: born when its 1.42 Å edges appear (r² = 0.71²), dies when it fills (r² = 1.42²)
    birth, death = h1[np.argmin(np.abs(h1[:, 1] - 0.71**2))][1:]
    assert death == pytest.approx(1.42**2, rel=0.01)
    assert stable_volume_atoms("ring", points, box, len(points), birth, death, 0.3) == [0, 1, 2, 3, 4, 5]
    # in a 2 × 1 × 1 supercell the two copies map back to the same atoms
    two = np.concatenate([points, points + [L, 0, 0]])
    pairs = persistence_diagrams(two, box * [2, 1, 1], (1,))
    b2, d2 = pairs[np.argmin(np.abs(pairs[:, 1] - birth) + np.abs(pairs[:, 2] - death))][1:]
    assert stable_volume_atoms("ring2", two, box * [2, 1, 1], len(points), b2, d2, 0.3) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="no H1 pair"):
        stable_volume_atoms("ring", points, box, len(points), birth + 1e-3, death, 0.3)


def test_bonds_against_ase_neighbour_list_and_mic_geometry():
    atoms = carbon_frame(5, density=2.8, jitter=0.25, seed=4)
    region = np.zeros(len(atoms), dtype=bool)
    region[::3] = True
    nl = NeighborList([0.925] * len(atoms), skin=0.0, self_interaction=False, bothways=True)  # 2 × 0.925 = 1.85 Å
    nl.update(atoms)
    lengths, angles = [], []
    for i in range(len(atoms)):
        js, offsets = nl.get_neighbors(i)
        vectors = atoms.positions[js] + offsets @ atoms.cell - atoms.positions[i]
        lengths += [np.linalg.norm(v) for j, v in zip(js, vectors) if i < j and (region[i] or region[j])]
        if region[i]:
            for a in range(len(js)):
                for b in range(a + 1, len(js)):
                    u, w = vectors[a], vectors[b]
                    angles.append(np.degrees(np.arccos(u @ w / np.linalg.norm(u) / np.linalg.norm(w))))
    assert len(lengths) > 20 and len(angles) > 20
    np.testing.assert_allclose(np.sort(bond_lengths(atoms, region)), np.sort(lengths), rtol=1e-10)
    np.testing.assert_allclose(np.sort(bond_angles(atoms, region)), np.sort(angles), rtol=1e-8, atol=1e-8)
    hist, _ = np.histogram(bond_lengths(atoms, region), bins=20, range=(1.0, 2.0))
    assert hist.sum() == len(lengths)


def test_roughness_tells_a_smooth_map_from_a_random_one():
    rng = np.random.default_rng(0)
    energy = rng.normal(size=400)
    smooth = np.column_stack([energy, rng.normal(scale=0.01, size=400)])
    shuffled = rng.permutation(smooth)
    assert roughness(smooth, energy) < 0.1
    assert roughness(shuffled, energy) == pytest.approx(2 / np.sqrt(np.pi), rel=0.15)  # E|X−Y|/σ for Gaussians


@pytest.fixture(scope="module")
def store(tmp_path_factory, client):
    tmp = tmp_path_factory.mktemp("analysis")
    frames = [carbon_frame(4, density=d, jitter=0.15 + 0.03 * i, seed=i) for i, d in enumerate([2.0, 2.6, 3.2] * 6)]
    ase.io.write(tmp / "frames.xyz", frames)
    ingest(tmp / "s.zarr", [tmp / "frames.xyz"], chunk_size=8, progress=False)
    for descriptor in (PH(), SOAP()):
        assert featurize(tmp / "s.zarr", descriptor, client, progress=False).computed == 18
    return tmp / "s.zarr"


def test_maps_are_stored_reused_and_equal_sklearn(store):
    from sklearn.decomposition import PCA

    s = FeatureStore(store, mode="a")
    report = descriptor_map(s, "C64", "ph", perplexities=(5,))
    assert not report.reused and report.n == 18 and set(report.scores) == {"pca", "tsne_p5"}
    assert all(0 <= sc["trustworthiness"] <= 1 and sc["roughness"] >= 0 for sc in report.scores.values())
    stored = open_store(store).descriptor("C64", report.group)
    hist = open_store(store).dataset("C64")["ph_histogram"].values.reshape(18, -1).astype(np.float64)
    z = (hist - hist.mean(axis=0)) / np.where(hist.std(axis=0) > 0, hist.std(axis=0), 1.0)
    direct = PCA(n_components=2, svd_solver="full").fit_transform(z)
    np.testing.assert_allclose(np.abs(stored["pca"].values), np.abs(direct), rtol=1e-6, atol=1e-8)  # up to sign
    again = descriptor_map(s, "C64", "ph", perplexities=(5,))
    assert again.reused and again.group == report.group and again.scores == report.scores
    other = descriptor_map(s, "C64", "ph", perplexities=(6,))
    assert other.group != report.group  # other settings: another map group
    coords = embed(z, MapParams("k", "histogram", True, (5,)))
    np.testing.assert_allclose(coords["tsne_p5"], stored["tsne_p5"].values, rtol=1e-6, atol=1e-6)


def test_maps_never_mix_datasets_and_leave_unlabelled_snapshots_unscored(tmp_path, client):
    """Two files (two datasets) and one unlabelled MD file: a map of everything is refused, a map
    of one dataset and the MD frames scores the labelled snapshots only and draws the rest grey."""
    from phstore.analysis.maps import analyze_maps

    for name, seed in (("castep", 0), ("vasp", 10), ("md", 20)):
        frames = [carbon_frame(3, density=2.0 + 0.2 * i, seed=seed + i) for i in range(6)]
        if name == "md":
            for a in frames:
                a.calc = None
        ase.io.write(tmp_path / f"{name}.xyz", frames)
    path = tmp_path / "s.zarr"
    ingest(path, [tmp_path / f"{n}.xyz" for n in ("castep", "vasp", "md")], chunk_size=8, progress=False)
    assert featurize(path, SOAP(), client, progress=False).computed == 18
    s = FeatureStore(path, mode="a")
    with pytest.raises(ValueError, match=r"2 datasets.*\['castep', 'vasp'\].*--dataset"):
        descriptor_map(s, "C27", "soap", perplexities=())
    report = descriptor_map(s, "C27", "soap", perplexities=(), dataset="[cm]*")  # castep and md
    assert report.n == 12
    stored = open_store(path).descriptor("C27", report.group)
    xy = stored["pca"].values
    assert np.isfinite(xy[:6]).all() and np.isnan(xy[6:12]).all() and np.isfinite(xy[12:]).all()
    energy = open_store(path).frames("C27")["energy_per_atom"].values
    assert report.scores["pca"]["roughness"] == pytest.approx(roughness(xy[:6], energy[:6]))
    assert descriptor_map(s, "C27", "soap", perplexities=(), dataset="vasp").n == 6
    analyze_maps(path, "C27", ["soap"], tmp_path / "fig", perplexities=(), dataset="[cm]*")
    assert (tmp_path / "fig" / "maps-pca.png").read_bytes()[:4] == b"\x89PNG"


def test_ridge_map_and_pair_selection(store, tmp_path):
    model = train("ridge", store, "C64", tmp_path / "ridge")
    grid = coefficient_grid(load_model_dir(model.path))
    assert grid.values.shape == (128, 128) and grid.extent == (0.0, 8.0)
    np.testing.assert_array_equal(grid.values.ravel(), load_model_dir(model.path).state()["coef"])
    rng = np.random.default_rng(1)
    births, deaths = rng.uniform(0, 8, 500), rng.uniform(0, 8, 500)
    ib, idb, inside = grid.bin_of(births, deaths)
    for b, d, i, j in zip(births[:50], deaths[:50], ib, idb):  # numpy's own binning
        h, _, _ = np.histogram2d([b], [d], bins=128, range=[[0, 8], [0, 8]])
        assert h[i, j] == 1
    diagram = np.column_stack([np.ones(500), births, deaths])
    high, low = np.quantile(grid.values, [0.9, 0.1])
    chosen = selected_pairs(diagram, grid, high, low)
    coef = grid.values[ib, idb]
    assert len(chosen) == int(((coef > high) | (coef < low)).sum()) > 0
    assert all(
        (side == "high") == (grid.values[grid.bin_of(np.array([b]), np.array([d]))[:2]][0] > high)
        for side, b, d in chosen
    )


def test_extreme_thresholds_select_the_extreme_cells_and_their_ties():
    rng = np.random.default_rng(2)
    grid = CoefficientGrid(rng.normal(size=(16, 16)), (0.0, 8.0))
    ordered = np.sort(grid.values.ravel())
    for high_cells, low_cells in ((1, 1), (12, 21), (200, 56)):
        high, low = grid.extreme_thresholds(high_cells, low_cells)
        assert (grid.values > high).sum() == high_cells and (grid.values < low).sum() == low_cells
        assert (
            ordered[-high_cells - 1] < high < ordered[-high_cells] and ordered[low_cells - 1] < low < ordered[low_cells]
        )
    twins = rng.permutation(256).astype(float)  # z-scored twin bins get equal coefficients:
    twins[twins == 243] = 244  # the 12th largest ties with the 13th
    twins[twins == 21] = 20  # the 21st smallest with the 22nd
    tied = CoefficientGrid(twins.reshape(16, 16), grid.extent)
    high, low = tied.extreme_thresholds(12, 21)
    assert (tied.values > high).sum() == 13 and (tied.values < low).sum() == 22
    for bad_grid, counts in (
        (grid, (0, 5)),
        (grid, (5, 0)),
        (grid, (200, 57)),
        (CoefficientGrid(np.ones((4, 4)), grid.extent), (1, 1)),
    ):
        with pytest.raises(
            ValueError, match="cells: give 1 or more on each side, .* at most in all, with the two sides apart"
        ):
            bad_grid.extreme_thresholds(*counts)


def test_analyze_commands_end_to_end(store, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ("analyze", "maps", "--store", str(store), "--collection", "C64", "--descriptors", "ph,soap")
    argv += ("--perplexity", "5", "--out", str(out))
    maps = run(*argv)
    assert "trustworthiness" in maps and maps.count("tsne_p5") == 2 and "computed" in maps
    for name in ("maps-pca.png", "maps-tsne_p5.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "reused" in run(*argv)
    run("train", "ridge", "--store", str(store), "--out", str(tmp_path / "ridge"), "--quiet")
    assert "drawn to" in run("analyze", "ridge-map", "--model", str(tmp_path / "ridge"))
    assert (tmp_path / "ridge" / "ridge-map.png").exists()
    ridge = tmp_path / "ridge"
    high, low = coefficient_grid(load_model_dir(ridge)).extreme_thresholds(25, 25)
    assert not analysed(ridge, store, "C64", [13, 14], high, low, 0.3, out)
    inv = run(
        "analyze",
        "inverse",
        "--model",
        str(tmp_path / "ridge"),
        "--store",
        str(store),
        "--collection",
        "C64",
        "--density",
        "2.6",
        "3.2",
        "--frames",
        "13:",
        "--first",
        "2",
        "--high-cells",
        "25",
        "--low-cells",
        "25",
        "--out",
        str(out),
        "--workers",
        "1",
        "--quiet",
    )
    assert "high:" in inv and "low :" in inv and "(0 failed)" in inv
    grid = coefficient_grid(load_model_dir(ridge)).values
    assert (grid > high).sum() >= 25 and (grid < low).sum() >= 25
    assert f"cells: {(grid > high).sum()} above --high {high:g}, {(grid < low).sum()} below --low {low:g}" in inv
    # the pipeline's skip check: done for these snapshots, thresholds, noise and outputs only
    assert analysed(ridge, store, "C64", [13, 14], high, low, 0.3, out)
    assert not analysed(ridge, store, "C64", [13, 15], high, low, 0.3, out)
    assert not analysed(ridge, store, "C64", [13, 14], high * 1.01, low, 0.3, out)
    assert not analysed(ridge, store, "C64", [13, 14], high, low, 0.3, tmp_path / "elsewhere")
    from phstore.cli import main

    argv = ["analyze", "inverse", "--model", str(tmp_path / "ridge"), "--store", str(store), "--collection", "C64"]
    assert main([*argv, "--density", "9.9"]) == 1
    assert "the selection holds no snapshot of C64" in capsys.readouterr().err
    for wrong in (["--high-cells", "5"], ["--high-cells", "5", "--low-cells", "5", "--high", "0.01"]):
        assert main([*argv, *wrong]) == 1
        assert "give --high-cells and --low-cells together, without --high and --low" in capsys.readouterr().err
    assert main([*argv, "--high-cells", "16384", "--low-cells", "1"]) == 1
    assert "the grid has 16384 cells: give 1 or more on each side, 16384 at most" in capsys.readouterr().err
    tagged = ase.io.read(out / "inverse-regions.extxyz", ":")
    assert len(tagged) == 2 and all(len(a) == 64 for a in tagged)
    regions = np.concatenate([a.arrays["region"] for a in tagged])
    assert {"high", "low"} <= set(regions.tolist()) <= {"none", "high", "low", "both"}
    bonds = np.load(out / "inverse-bonds.npz")
    assert len(bonds["length_high"]) > 0 and len(bonds["angle_low"]) > 0
    s = open_store(store)
    group = next(g for g in s.descriptor_groups("C64") if g.startswith("inverse-"))
    stored = s.descriptor("C64", group)
    np.testing.assert_array_equal(
        stored["region"].values[[13, 14]],
        [[("none", "high", "low", "both").index(t) for t in a.arrays["region"]] for a in tagged],
    )
    # frames 13: at 2.6 and 3.2 g/cm³ (an open range once raised TypeError), the first two: 13 and 14 only
    assert np.flatnonzero(stored["status"].values).tolist() == [13, 14]
    hist = s.group_attrs("C64", group)["bond_histograms"]
    counts, _ = np.histogram(bonds["length_high"], bins=np.array(hist["length_bins"]))
    assert hist["length_high"] == counts.tolist() and hist["snapshots"] == [13, 14]
    for name in ("inverse-bonds.png", "inverse-regions.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_a_failing_stable_volume_is_recorded_and_the_rest_goes_on(store, tmp_path, client):
    from phstore.analysis.inverse import inverse_analysis

    model = train("ridge", store, "C64", tmp_path / "ridge")
    # a few pairs: each timeout restarts the child
    high, low = coefficient_grid(load_model_dir(model.path)).extreme_thresholds(7, 7)
    report = inverse_analysis(
        model.path,
        store,
        "C64",
        client,
        [0],
        high,
        low,
        noise=0.3,
        time_limit=1e-3,
        out=tmp_path / "out",
        progress=False,
    )
    assert report.pairs and len(report.failed) == len(report.pairs)  # every pair overran its time limit
    assert all("ChildTimeout" in p.error for p in report.failed)
    assert (tmp_path / "out" / "inverse-regions.extxyz").exists()
