"""Vectors of stored PH diagrams (persistence images, histograms) made without recomputing PH,
the store's diagram accessor and the diagram plot."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest

from phstore import open_store
from phstore.descriptors import (
    PH,
    DiagramHistogram,
    DiagramHistogramParams,
    PersistenceImage,
    PersistenceImageParams,
    PHParams,
)
from phstore.featurize import featurize
from phstore.ingest import ingest
from phstore.ph import periodic_alpha_diagram
from phstore.ph.vectorize import histogram, persistence_image
from phstore.store import DONE, FAILED, FeatureStore
from phstore.verify import verify_store
from tests.helpers import carbon_frame, run


def brute_force_image(pairs, bins, birth_range, persistence_range, sigma, samples=40):
    """The persistence image by sampling each pixel's Gaussian mass on a fine grid (midpoint rule)."""
    edges_b = np.linspace(*birth_range, bins + 1)
    edges_p = np.linspace(*persistence_range, bins + 1)
    image = np.zeros((bins, bins))
    for b, d in pairs:
        p = d - b
        w = min(p / persistence_range[1], 1.0)
        for i in range(bins):
            xb = (
                np.linspace(edges_b[i], edges_b[i + 1], samples, endpoint=False)
                + (edges_b[1] - edges_b[0]) / samples / 2
            )
            gb = np.exp(-((xb - b) ** 2) / (2 * sigma**2)).sum() * (edges_b[1] - edges_b[0]) / samples
            for j in range(bins):
                xp = (
                    np.linspace(edges_p[j], edges_p[j + 1], samples, endpoint=False)
                    + (edges_p[1] - edges_p[0]) / samples / 2
                )
                gp = np.exp(-((xp - p) ** 2) / (2 * sigma**2)).sum() * (edges_p[1] - edges_p[0]) / samples
                image[i, j] += w * gb * gp / (2 * np.pi * sigma**2)
    total = sum(min((d - b) / persistence_range[1], 1.0) for b, d in pairs)
    return image / total


def test_persistence_image_integrates_each_gaussian_over_its_pixels():
    pairs = np.array([[0.5, 1.0], [1.2, 3.5], [2.0, 2.05], [0.3, np.inf]])
    image = persistence_image(pairs, 8, (0.0, 4.0), (0.0, 3.0), 0.3)
    expected = brute_force_image(pairs[:3], 8, (0.0, 4.0), (0.0, 3.0), 0.3)
    np.testing.assert_allclose(image, expected, rtol=1e-3, atol=1e-6)
    inside = persistence_image(np.array([[2.0, 3.5]]), 16, (0.0, 4.0), (0.0, 3.0), 0.05)
    assert inside.sum() == pytest.approx(1.0, abs=1e-9)  # all of one pair's mass lies on the grid
    with pytest.raises(ValueError, match="no finite pair"):
        persistence_image(np.array([[1.0, 1.0 + 1e-7]]), 8, (0.0, 4.0), (0.0, 3.0), 0.3, min_persistence=1e-5)


def test_histogram_is_numpys_and_applies_the_threshold():
    pairs = np.array([[0.5, 1.0], [1.2, 3.5], [2.0, 2.0 + 1e-6], [0.3, np.inf]])
    hist, _, _ = np.histogram2d([0.5, 1.2], [1.0, 3.5], bins=16, range=[[0, 8], [0, 8]])
    np.testing.assert_array_equal(histogram(pairs, 16, (0.0, 8.0), 1e-5), hist / 2)
    np.testing.assert_array_equal(histogram(pairs, 16, (0.0, 8.0), 1e-5, atoms=10), hist / 10)
    with pytest.raises(ValueError, match="no finite pair"):
        histogram(np.array([[9.0, 10.0]]), 16, (0.0, 8.0))
    # on and next to every bin edge, on the range's ends and outside it: numpy's bins exactly
    edges = np.linspace(0, 8, 129)
    values = np.concatenate([edges, np.nextafter(edges, -1), np.nextafter(edges, 9), [-0.1, 8.1, 3.3]])
    rng = np.random.default_rng(0)
    births, deaths = rng.choice(values, 5000), rng.choice(values, 5000)
    keep = deaths > births  # the pairs histogram() counts (persistence above 0)
    hist, _, _ = np.histogram2d(births[keep], deaths[keep], bins=128, range=[[0, 8], [0, 8]])
    np.testing.assert_array_equal(histogram(np.column_stack([births, deaths]), 128, (0.0, 8.0)) * hist.sum(), hist)


PER_ATOM = DiagramHistogram(DiagramHistogramParams(bins=32, normalise="atom"))


@pytest.fixture(scope="module")
def store(tmp_path_factory, client):
    """Six 64-atom frames (one with a duplicated atom, whose PH fails) with PH, then persistence
    images and 32-bin histograms of the stored diagrams (normalised, and per atom)."""
    tmp = tmp_path_factory.mktemp("vectors")
    frames = [carbon_frame(4, density=2.0 + 0.2 * i, seed=30 + i) for i in range(6)]
    frames[4].positions[2] = frames[4].positions[1]
    ase.io.write(tmp / "run.xyz", frames, format="extxyz")
    path = tmp / "s.zarr"
    ingest(path, [tmp / "run.xyz"], chunk_size=4, progress=False, min_distance=0)
    with pytest.raises(ValueError, match="featurize ph"):  # the diagrams must be there first
        featurize(path, PersistenceImage(), client, progress=False)
    assert featurize(path, PH(), client, progress=False).computed == 5
    for vector in (PersistenceImage(), DiagramHistogram(DiagramHistogramParams(bins=32)), PER_ATOM):
        report = featurize(path, vector, client, progress=False)
        assert report.computed == 5 and not report.errors
        assert [(row, "no PH diagram" in e and "duplicated atom" in e) for _, row, e in report.failures] == [(4, True)]
    return path, frames


def test_vectors_of_stored_diagrams_equal_direct_computation(store):
    path, _ = store
    s = open_store(path)
    image = s.descriptor("C64", PersistenceImage().group).load()
    hist = s.descriptor("C64", DiagramHistogram(DiagramHistogramParams(bins=32)).group).load()
    per_atom = s.descriptor("C64", PER_ATOM.group).load()
    assert per_atom.histogram.attrs["units"] == "1/atom" and hist.histogram.attrs["units"] == "1"
    assert image.status.values.tolist() == [DONE] * 4 + [FAILED, DONE]
    p = PersistenceImageParams()
    for i, atoms in enumerate(s.atoms("C64", slice(0, 6))):  # as stored (extxyz rounds positions to 1e-8 Å)
        if i == 4:
            continue
        h1 = periodic_alpha_diagram(atoms.positions, atoms.cell.array, max_value=8.0).degree(1)
        expected = persistence_image(h1, p.bins, p.birth_range, p.persistence_range, p.sigma, p.min_persistence)
        np.testing.assert_allclose(image.image.values[i], expected, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(hist.histogram.values[i], histogram(h1, 32, (0.0, 8.0), 1e-5), atol=1e-7)
        finite = h1[np.isfinite(h1[:, 1]) & (h1[:, 1] - h1[:, 0] > 1e-5)]
        counts, _, _ = np.histogram2d(*finite.T, bins=32, range=[[0, 8], [0, 8]])
        np.testing.assert_allclose(per_atom.histogram.values[i], counts / 64, rtol=1e-6)
        np.testing.assert_array_equal(s.diagram("C64", i, 1), h1)
    assert verify_store(path, progress=False).ok


def test_vectors_read_the_stored_diagrams_not_recompute_them(store, client, tmp_path):
    """Diagrams changed in the store (every value doubled) give the image of the changed diagrams."""
    import shutil

    path, _ = store
    copy = tmp_path / "s.zarr"
    shutil.copytree(path, copy)
    s = FeatureStore(copy, mode="a")
    group = PH().group
    with s.writer("test"):
        for chunk in (0, 1):
            records, attrs = s.records("C64", group, chunk)
            s.write_records("C64", group, chunk, records * [1, 1, 2, 2], attrs)
    shutil.rmtree(copy / "C64" / PersistenceImage().group)
    featurize(copy, PersistenceImage(), client, progress=False)
    stored = open_store(copy).descriptor("C64", PersistenceImage().group).image.values[0]
    p = PersistenceImageParams()
    doubled = open_store(path).diagram("C64", 0, 1) * 2
    np.testing.assert_allclose(
        stored,
        persistence_image(doubled, p.bins, p.birth_range, p.persistence_range, p.sigma, p.min_persistence),
        rtol=1e-5,
        atol=1e-8,
    )


def test_vector_parameters_and_ph_variant_are_in_the_key():
    a, b = PersistenceImage(), PersistenceImage(PersistenceImageParams(sigma=0.2))
    c = PersistenceImage(PersistenceImageParams(ph=PHParams(min_persistence=1e-4)))
    assert len({a.group, b.group, c.group}) == 3
    assert a.provenance()["params"]["ph"]["engine"] == "native"
    with pytest.raises(ValueError, match="truncated at 8"):
        PersistenceImage(PersistenceImageParams(birth_range=(0.0, 6.0)))
    PersistenceImage(PersistenceImageParams(birth_range=(0.0, 6.0), ph=PHParams(truncate=False)))
    with pytest.raises(ValueError, match="not 3"):
        DiagramHistogram(DiagramHistogramParams(degree=3))
    assert PER_ATOM.group != DiagramHistogram(DiagramHistogramParams(bins=32)).group
    with pytest.raises(ValueError, match="counts the atoms as degree-0 pairs"):
        DiagramHistogram(DiagramHistogramParams(normalise="atom", ph=PHParams(degrees=(1, 2))))


def test_diagram_accessor_errors_say_what_to_do(store):
    path, _ = store
    s = open_store(path)
    with pytest.raises(ValueError, match="duplicated atom"):
        s.diagram("C64", 4)
    with pytest.raises(ValueError, match="no snapshot 9"):
        s.diagram("C64", 9)
    h0 = s.diagram("C64", 0, 0)
    assert np.isinf(h0[:, 1]).sum() == 1 and (h0[:, 0] == 0).all()


def test_models_train_on_persistence_images_and_the_diagram_plot(store, tmp_path):
    path, _ = store
    out = run("train", "ridge", "--store", str(path), "--ph-features", "pimage", "--out", str(tmp_path / "r"))
    assert "RMSE" in out
    from phstore.modeldir import load_model_dir

    model = load_model_dir(tmp_path / "r", "ridge")
    assert model.config["features"] == [["pimage", "image"]] and model.config["feature_shapes"] == [[32, 32]]
    assert len(np.unique(model.state()["scale"])) == 1  # one scale for the whole image
    row = run("compare", "--store", str(path), "--models", str(tmp_path)).splitlines()[2].split()
    assert row[:3] == ["r", "ridge", "pimage"]  # the features it was trained on
    run(
        "train",
        "cnn",
        "--store",
        str(path),
        "--ph-features",
        "pimage",
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "c"),
        "--quiet",
    )
    assert load_model_dir(tmp_path / "c", "cnn").config["feature_shapes"] == [[32, 32]]
    out = run("query", "--store", str(path), "--frames", "1:3", "--plot-diagram", str(tmp_path / "d.png"))
    assert "snapshot 1" in out and (tmp_path / "d.png").stat().st_size > 10_000


def test_models_scale_each_histogram_bin_but_an_image_as_a_whole():
    from phstore.features import feature_scales

    std = np.array([0.5, 0.0, 1e-20, 2.0, 1e-20, 0.0, 1e-3])
    scales = feature_scales(std, {"feature_shapes": [[3], [2, 2]], "feature_scalings": ["zscore", "block"]})
    np.testing.assert_array_equal(scales[:3], [0.5, 1.0, 1.0])  # z-score; constant bins keep scale 1
    np.testing.assert_allclose(scales[3:], np.sqrt(np.mean(std[3:] ** 2)))
