"""Ridge on stored PH histograms against scikit-learn fitted here on the same numbers."""

import ase.io
import numpy as np
import pytest
from sklearn.linear_model import Ridge

from phstore import features, open_store
from phstore.descriptors import PH, SOAP, PHParams
from phstore.features import descriptor_group, read_features
from phstore.featurize import featurize
from phstore.ingest import ingest
from phstore.modeldir import load_model_dir
from phstore.store import DONE
from phstore.training.params import RidgeConfig
from phstore.training.split import Split
from phstore.training.train import train
from tests import helpers
from tests.helpers import carbon_frame


@pytest.fixture(scope="module")
def store(tmp_path_factory, client):
    """Twelve 125-atom frames at three densities (two trajectories each) and one duplicated-atom
    frame, whose PH fails, with PH features."""
    tmp = tmp_path_factory.mktemp("ridge")
    (tmp / "data").mkdir()
    for run, density in enumerate((2.0, 2.0, 2.6, 2.6, 3.2, 3.2)):
        frames = [carbon_frame(5, density=density, jitter=0.2 + 0.05 * i, seed=10 * run + i) for i in range(2)]
        ase.io.write(tmp / "data" / f"run{run}.xyz", frames)
    bad = carbon_frame(5, seed=99)
    bad.positions[1] = bad.positions[0]
    ase.io.write(tmp / "data" / "run9.xyz", [bad])
    unlabelled = carbon_frame(5, density=2.6, seed=77)
    unlabelled.calc = None  # MD without DFT: featurized, never trained on
    ase.io.write(tmp / "data" / "run8.xyz", [unlabelled])
    ingest(tmp / "s.zarr", [tmp / "data"], chunk_size=4, progress=False, min_distance=0, dataset="data")
    report = featurize(tmp / "s.zarr", PH(), client, progress=False)
    assert report.computed == 13 and len(report.failures) == 1
    return tmp / "s.zarr"


def test_ridge_equals_sklearn_on_the_stored_histograms(store, tmp_path):
    model = train("ridge", store, "C125", tmp_path / "m")
    fit_rows, test = model.train["C125"], model.test["C125"]
    s = open_store(store)
    ds = s.dataset("C125").load()
    done = np.flatnonzero(ds["ph_status"].values == DONE)
    labelled = np.flatnonzero(np.isfinite(ds["energy_per_atom"].values))
    assert len(done) == 13 and len(labelled) == 13  # the unlabelled frame has PH; the failed one is labelled
    assert sorted([*fit_rows, *test]) == np.intersect1d(done, labelled).tolist()  # both are left out
    X = ds["ph_histogram"].values.reshape(len(ds["ph_histogram"]), -1).astype(np.float64)
    y = ds["energy_per_atom"].values
    mean, std = X[fit_rows].mean(axis=0), X[fit_rows].std(axis=0)
    std[std == 0] = 1.0
    direct = Ridge(alpha=200.0).fit((X[fit_rows] - mean) / std, y[fit_rows])
    state = load_model_dir(model.path).state()
    np.testing.assert_allclose(state["coef"], direct.coef_, rtol=1e-6, atol=1e-12)
    assert float(state["intercept"]) == pytest.approx(direct.intercept_, rel=1e-9)
    predicted = direct.predict((X[test] - mean) / std)
    rmse = np.sqrt(np.mean((predicted - y[test]) ** 2)) * 1000
    assert model.metrics["test"]["rmse_mev"] == pytest.approx(rmse, rel=1e-6)
    assert (model.path / "parity.png").read_bytes()[:4] == b"\x89PNG"
    assert model.config["descriptor_keys"] == [PH().provenance()["key"]] and model.config["feature_shapes"] == [
        [128, 128]
    ]


def test_soap_ridge_equals_sklearn_on_the_stored_soap(store, tmp_path, client):
    """The linear baseline on atom-mean SOAP (``train soap-ridge``), every column z-scored."""
    featurize(store, SOAP(), client, progress=False)
    helpers.run("train", "soap-ridge", "--store", str(store), "--alpha", "1", "--out", str(tmp_path / "m"), "--quiet")
    model = load_model_dir(tmp_path / "m", "soap-ridge")
    assert model.config["features"] == [["soap", "mean"]] and model.config["feature_shapes"] == [[360]]
    fit_rows, test = model.train["C125"], model.test["C125"]
    ds = open_store(store).dataset("C125").load()
    X, y = ds["soap_mean"].values.astype(np.float64), ds["energy_per_atom"].values
    mean, std = X[fit_rows].mean(axis=0), X[fit_rows].std(axis=0)
    std[std < 1e-12] = 1.0
    direct = Ridge(alpha=1.0).fit((X[fit_rows] - mean) / std, y[fit_rows])
    np.testing.assert_allclose(model.state()["coef"], direct.coef_, rtol=1e-6, atol=1e-12)
    rmse = np.sqrt(np.mean((direct.predict((X[test] - mean) / std) - y[test]) ** 2)) * 1000
    assert model.metrics["test"]["rmse_mev"] == pytest.approx(rmse, rel=1e-6)


def test_training_says_what_it_used(store, tmp_path, capsys):
    """14 snapshots of the dataset, the unlabelled one has PH but no energy, the duplicated-atom one
    has no PH: 12 used, and it is said."""
    from phstore.cli import main

    key = PH().provenance()["key"]
    model = train("ridge", store, "C125", tmp_path / "m", descriptor_keys=(key,))
    assert model.metrics["snapshots"] == {
        "selected": 14,
        "unlabelled": 1,
        "failed": 1,
        "pending": 0,
        "used": 12,
        "train": 10,
        "test": 2,
    }
    assert main(["train", "ridge", "--store", str(store), "--out", str(tmp_path / "c"), "--descriptor-key", key]) == 0
    assert (
        "used 12 of the 14 snapshots of dataset 'data' (1 without energy, 1 with failed and 0 with pending features "
        "left out): 10 train, 2 test" in capsys.readouterr().out
    )


def test_trajectory_split_and_alpha(store, tmp_path):
    model = train("ridge", store, "C125", tmp_path / "m", RidgeConfig(alpha=1.0), Split("trajectory", 0.3, seed=2))
    traj = open_store(store).frames("C125")["trajectory"].values
    assert set(traj[model.train["C125"]]).isdisjoint(traj[model.test["C125"]])
    assert model.config["params"]["alpha"] == 1.0


def test_several_ph_variants_need_a_key(store, tmp_path, client):
    featurize(store, PH(PHParams(bins=32)), client, progress=False)
    with pytest.raises(ValueError, match="choose one with --descriptor-key"):
        train("ridge", store, "C125", tmp_path / "m")
    model = train(
        "ridge", store, "C125", tmp_path / "m", descriptor_keys=(PH(PHParams(bins=32)).provenance()["key"][:6],)
    )
    assert model.config["feature_shapes"] == [[32, 32]]
    assert load_model_dir(model.path).state()["coef"].shape == (32 * 32,)


def test_a_ridge_model_is_stored_and_applied_without_torch(store, tmp_path):
    """The state is plain arrays: a process that cannot import torch loads the model and predicts."""
    import subprocess
    import sys

    model = train("ridge", store, "C125", tmp_path / "m", descriptor_keys=(PH().provenance()["key"],))
    script = (
        "import sys, numpy as np; sys.modules['torch'] = None\n"
        "from phstore.modeldir import load_model_dir\n"
        "from phstore.store import FeatureStore\n"
        "from phstore.training.train import load_model, model_rows\n"
        f"m = load_model_dir({str(model.path)!r})\n"
        f"rows = model_rows(m, FeatureStore({str(store)!r}), 'C125', np.array({model.test['C125'].tolist()}))\n"
        "print(repr(load_model(m).predict(rows).tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    ds = open_store(store).dataset("C125")
    y = ds["energy_per_atom"].values[model.test["C125"]]
    rmse = np.sqrt(np.mean((np.array(eval(out)) - y) ** 2)) * 1000
    assert rmse == pytest.approx(model.metrics["test"]["rmse_mev"], rel=1e-9)


def test_predictions_go_into_the_store_and_transfer_to_another_size(store, tmp_path, client, capsys):
    from phstore.training.predict import predict

    model = train("ridge", store, "C125", tmp_path / "m", descriptor_keys=(PH().provenance()["key"],))
    report = predict(model.path, store, "C125")
    # the unlabelled frame is predicted, and left out of the metrics; the duplicated-atom frame has no features
    assert report.predicted == 13 and report.failed == 1 and report.metrics["n"] == 12
    ds = open_store(store).sel("C125")
    stored = ds["prediction_energy_per_atom"].values
    assert ds["prediction_energy_per_atom"].chunks is not None
    y = ds["energy_per_atom"].values
    test = model.test["C125"]
    rmse = np.sqrt(np.mean((stored[test] - y[test]) ** 2)) * 1000
    assert rmse == pytest.approx(model.metrics["test"]["rmse_mev"], rel=1e-9)
    status = open_store(store).descriptor("C125", PH().group)["status"].values
    assert np.isnan(stored[status != DONE]).all() and np.isfinite(stored[status == DONE]).all()
    # transfer: 64-atom frames of the same dataset, featurized with the same PH parameters
    ase.io.write(tmp_path / "small.xyz", [carbon_frame(4, density=2.4, seed=50 + i) for i in range(3)])
    ingest(store, [tmp_path / "small.xyz"], progress=False, dataset="data")
    featurize(store, PH(), client, collections=["C64"], progress=False)
    report = predict(model.path, store, "C64")
    assert report.predicted == 3 and report.metrics["n"] == 3 and np.isfinite(report.metrics["rmse_mev"])
    other = PH(PHParams(bins=16))  # a variant computed for C125 only
    featurize(store, other, client, collections=["C125"], progress=False)
    coarse = train("ridge", store, "C125", tmp_path / "m16", descriptor_keys=(other.provenance()["key"],))
    with pytest.raises(ValueError, match=f"C64 has no {other.group} features"):
        predict(coarse.path, store, "C64")
    # compare reads the transfer errors back from the stored predictions
    from phstore.cli import main
    from phstore.store import FeatureStore
    from phstore.training.predict import transfer_metrics

    transfer = transfer_metrics(FeatureStore(store), load_model_dir(model.path))
    assert list(transfer) == ["C64"] and transfer["C64"]["rmse_mev"] == pytest.approx(report.metrics["rmse_mev"])
    capsys.readouterr()
    assert main(["compare", "--store", str(store), "--models", str(tmp_path)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:-1]}
    assert rows["m"][-1] == f"{report.metrics['rmse_mev']:.1f}" and rows["m16"][-1] == "-"


def test_scaler_is_fit_on_the_training_split_only(store, tmp_path):
    """Changing the features of test snapshots changes neither the scaler nor the fit."""
    import shutil

    from phstore.store import FeatureStore

    key = (PH().provenance()["key"],)
    model = train("ridge", store, "C125", tmp_path / "a", descriptor_keys=key)
    copy = shutil.copytree(store, tmp_path / "copy.zarr")
    s = FeatureStore(copy, mode="a")
    with s.writer("test"):
        for row in model.test["C125"]:
            region = slice(int(row), int(row) + 1)
            h = s.read_rows("C125", PH().group, region, ["histogram"])["histogram"]
            s.commit_rows("C125", PH().group, region, {"histogram": h * 3 + 0.01}, [DONE])
    again = train("ridge", copy, "C125", tmp_path / "b", descriptor_keys=key)
    a, b = load_model_dir(model.path).state(), load_model_dir(again.path).state()
    for name in ("mean", "scale", "coef", "intercept"):
        np.testing.assert_array_equal(a[name], b[name])
    assert again.metrics["test"]["rmse_mev"] != model.metrics["test"]["rmse_mev"]  # the change was seen


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, client):
    """One dataset of two cell sizes (64 and 125 atoms, two trajectories each): two collections."""
    tmp = tmp_path_factory.mktemp("mixed")
    (tmp / "data").mkdir()
    for run, (n_side, density) in enumerate([(4, 2.2), (4, 3.0), (5, 2.2), (5, 3.0)]):
        frames = [carbon_frame(n_side, density=density, jitter=0.2 + 0.05 * i, seed=10 * run + i) for i in range(3)]
        ase.io.write(tmp / "data" / f"run{run}.xyz", frames)
    ingest(tmp / "s.zarr", [tmp / "data"], chunk_size=4, progress=False, dataset="one")
    assert featurize(tmp / "s.zarr", PH(), client, progress=False).computed == 12
    return tmp / "s.zarr"


def test_collections_of_different_sizes_train_together(mixed, tmp_path):
    model = train("ridge", mixed, ["C64", "C125"], tmp_path / "m", split=Split("trajectory", 0.3, seed=1))
    assert model.provenance["collections"] == ["C64", "C125"]
    X, y, labels, is_test = [], [], [], []
    for coll in ("C64", "C125"):
        ds = open_store(mixed).dataset(coll).load()
        rows = np.sort(np.concatenate([model.train[coll], model.test[coll]]))
        assert rows.tolist() == list(range(6))
        X.append(ds["ph_histogram"].values.reshape(6, -1).astype(np.float64))
        y.append(ds["energy_per_atom"].values)
        labels += [f"{coll}/{t}" for t in ds["trajectory"].values.tolist()]
        is_test.append(np.isin(np.arange(6), model.test[coll]))
    X, y, labels, is_test = np.concatenate(X), np.concatenate(y), np.array(labels), np.concatenate(is_test)
    assert set(labels[is_test]).isdisjoint(labels[~is_test])  # whole (collection, trajectory) held out
    mean, std = X[~is_test].mean(axis=0), X[~is_test].std(axis=0)
    std[std == 0] = 1.0
    direct = Ridge(alpha=200.0).fit((X[~is_test] - mean) / std, y[~is_test])
    rmse = np.sqrt(np.mean((direct.predict((X[is_test] - mean) / std) - y[is_test]) ** 2)) * 1000
    assert model.metrics["test"]["rmse_mev"] == pytest.approx(rmse, rel=1e-6)


def test_collections_with_different_variants_are_refused(mixed, tmp_path, client):
    featurize(mixed, PH(PHParams(bins=16)), client, collections=["C64"], progress=False)
    with pytest.raises(ValueError, match="C64 has 2 ph variants"):
        train("ridge", mixed, ["C64", "C125"], tmp_path / "m")
    key = PH(PHParams(bins=16)).provenance()["key"]
    with pytest.raises(ValueError, match="hold different descriptor variants"):
        train("ridge", mixed, ["C64", "C125"], tmp_path / "m", descriptor_keys=(key,))


def test_features_read_block_by_block_equal_the_dataset(mixed, monkeypatch):
    """Rows in any order, across collections, blocks and several sources, as float64 or float32."""
    monkeypatch.setattr(features, "READ_CHUNKS", 1)  # blocks of one 4-row chunk
    store = open_store(mixed)
    group = descriptor_group(store, "C64", "ph", [PH().provenance()["key"]])
    parts = [("C125", np.arange(6)), ("C64", np.array([5, 0, 4, 2])), ("C64", np.array([3]))]
    expected = np.concatenate(
        [store.descriptor(c, group)["histogram"].values[rows].reshape(len(rows), -1) for c, rows in parts]
    )
    for dtype in (np.float64, np.float32):
        X = read_features(store, parts, [(group, "histogram"), (group, "histogram")], dtype)
        assert X.dtype == dtype and X.shape == (11, 2 * 128 * 128)
        np.testing.assert_array_equal(X, np.concatenate([expected, expected], axis=1).astype(dtype))
