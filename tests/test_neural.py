"""The paper's CNN and the SOAP MLP trained from the store: streaming, learning curve, outputs."""

import numpy as np
import pytest
import torch

from phstore import open_store
from phstore.descriptors import PH, SOAP
from phstore.featurize import featurize
from phstore.ingest import ingest
from phstore.modeldir import load_model_dir
from phstore.store import DONE, FeatureStore
from phstore.training.data import TrainingData
from phstore.training.neural import ChunkStream, build_network
from phstore.training.params import NeuralConfig
from phstore.training.split import Split
from phstore.training.train import train
from tests.helpers import assert_same_training, interrupt_after_checkpoint, record_epochs, write_trajectory


@pytest.fixture(scope="module")
def store(tmp_path_factory, client):
    tmp = tmp_path_factory.mktemp("neural")
    for run, density in enumerate((2.0, 2.6, 3.2)):
        write_trajectory(tmp / "data" / f"run{run}.xyz", 5, density=density, n_side=5, seed=run)
    ingest(tmp / "s.zarr", [tmp / "data"], chunk_size=4, progress=False, dataset="data")
    for descriptor in (PH(), SOAP()):
        assert featurize(tmp / "s.zarr", descriptor, client, progress=False).computed == 15
    return tmp / "s.zarr"


def test_paper_architectures():
    cnn = build_network(NeuralConfig.cnn(), [(128, 128)])
    convs = [m for m in cnn if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 32] and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in cnn) == 3
    assert sum(isinstance(m, torch.nn.Linear) for m in cnn) == 2
    assert cnn(torch.zeros(5, 128 * 128)).shape == (5, 1)
    # channels-last weights (for speed) compute what the same weights in the default layout do
    plain = build_network(NeuralConfig.cnn(), [(128, 128)]).to(memory_format=torch.contiguous_format)
    plain.load_state_dict(cnn.state_dict())
    assert convs[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain[4].weight.is_contiguous(memory_format=torch.channels_last)  # the second convolution
    x = torch.rand(4, 128 * 128)
    with torch.no_grad():
        torch.testing.assert_close(cnn(x), plain(x), rtol=1e-4, atol=1e-6)
    mlp = build_network(NeuralConfig.soap_mlp(), [(360,)])
    assert [m.out_features for m in mlp if isinstance(m, torch.nn.Linear)] == [40, 40, 1]
    c = NeuralConfig.cnn()
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.milestones, c.epochs) == (
        "sgd",
        0.0015,
        0.9,
        0.001,
        (200, 400, 800, 1200),
        1600,
    )
    m = NeuralConfig.soap_mlp()
    assert (m.optimizer, m.lr, m.milestones, m.epochs) == ("adam", 0.001, (200, 500, 1000), 2000)


def test_stream_reads_one_chunk_at_a_time_and_covers_every_row(store):
    s = open_store(store)
    data = TrainingData.select(s, "C125", None, Split())
    group = PH().group
    stream = ChunkStream(s, data.parts, [(group, "histogram"), (SOAP().group, "mean")])
    rows = data.parts[0][1]
    seen = []
    direct = s.descriptor("C125", group)["histogram"].values
    soap = s.descriptor("C125", SOAP().group)["mean"].values
    sizes = []
    for pos, x in stream.batches(data.train, 3, np.random.default_rng(0)):
        pos = pos.numpy()
        sizes.append(len(pos))
        np.testing.assert_array_equal(x[:, : 128 * 128], direct[rows[pos]].reshape(len(pos), -1))
        np.testing.assert_array_equal(x[:, 128 * 128 :], soap[rows[pos]])
        seen += pos.tolist()
    assert sorted(seen) == sorted(data.train.tolist())
    assert all(n == 3 for n in sizes[:-1]) and 0 < sizes[-1] <= 3  # batches fill across chunks
    reads = []
    stream.store.read_rows = lambda *a, **k: reads.append(a) or FeatureStore.read_rows(s, *a, **k)
    for _ in range(2):  # everything is cached: no more reads
        list(stream.batches(data.train, 3, np.random.default_rng(1)))
    assert not reads and stream._all is not None
    fresh = ChunkStream(s, data.parts, [(group, "histogram"), (SOAP().group, "mean")])
    for (p1, x1), (p2, x2) in zip(
        stream.batches(data.train, 3, np.random.default_rng(2)),
        fresh.batches(data.train, 3, np.random.default_rng(2)),
        strict=True,
    ):
        assert p1.tolist() == p2.tolist() and torch.equal(x1, x2)  # cached or read: the same batches
    small = ChunkStream(s, data.parts, [(group, "histogram")], cache_bytes=2 * 4 * 128 * 128 * s.chunk_size)
    for _ in range(2):
        assert sorted(p for pos, _ in small.batches(data.train, 5) for p in pos.tolist()) == sorted(data.train.tolist())
    assert 0 < len(small._cache) <= 2 and small._cached_bytes <= small.cache_bytes  # the rest is streamed


@pytest.mark.parametrize("cache_chunks", [0, 1, 100], ids=["streamed", "partly-cached", "cached"])
def test_standardized_stream_yields_zscores_of_the_stored_rows(store, cache_chunks):
    s = open_store(store)
    data = TrainingData.select(s, "C125", None, Split())
    source = [(SOAP().group, "mean")]
    raw = s.descriptor("C125", SOAP().group)["mean"].values[data.parts[0][1]].astype(np.float32)
    mean, scale = torch.tensor(raw.mean(0)), torch.tensor(raw.std(0) + 1.0)
    stream = ChunkStream(s, data.parts, source, cache_bytes=cache_chunks * 4 * 360 * s.chunk_size)
    list(stream.batches(data.train, 3))  # fill the cache (as the statistics pass does) before standardising
    stream.standardize(mean, scale)
    for _ in range(2):  # chunks from the cache, the gathered tensor or the store
        for pos, x in stream.batches(np.arange(len(raw)), 5, np.random.default_rng(0)):
            np.testing.assert_allclose(
                x.numpy(), (raw[pos.numpy()] - mean.numpy()) / scale.numpy(), rtol=1e-6, atol=1e-6
            )
    with pytest.raises(RuntimeError, match="already standardised"):
        stream.standardize(mean, scale)


@pytest.mark.parametrize(
    "config",
    [
        NeuralConfig.cnn(epochs=3, batch_size=4),
        NeuralConfig.soap_mlp(epochs=30, batch_size=4),
        NeuralConfig.ph_soap(epochs=30, batch_size=4),
    ],
    ids=["cnn", "soap-mlp", "ph-soap"],
)
def test_training_writes_a_complete_model(store, tmp_path, config):
    model = train(config.kind, store, "C125", tmp_path / "m", config, progress=False)
    history = model.metrics["history"]
    assert len(history) == config.epochs and all(np.isfinite(h["test_rmse_mev"]) for h in history)
    assert history[-1]["train_rmse_mev"] < history[0]["train_rmse_mev"] or config.kind == "cnn"
    for png in ("parity.png", "learning-curve.png"):
        assert (model.path / png).read_bytes()[:4] == b"\x89PNG"
    state = load_model_dir(model.path).state()
    net = build_network(config, [tuple(x) for x in model.config["feature_shapes"]])
    net.load_state_dict({k.removeprefix("net."): torch.from_numpy(v) for k, v in state.items() if k.startswith("net.")})
    # the saved network and scaler reproduce the recorded test RMSE
    ds = open_store(store).dataset("C125").load()
    test = model.test["C125"]
    x = torch.tensor(
        np.concatenate([ds[f"{d}_{v}"].values[test].reshape(len(test), -1) for d, v in config.features], axis=1),
        dtype=torch.float32,
    )
    with torch.no_grad():
        mean, scale = (torch.from_numpy(state[k]).float() for k in ("input_mean", "input_scale"))
        z = net((x - mean) / scale).squeeze(1).numpy()
    pred = z * float(state["target_std"]) + float(state["target_mean"])
    rmse = np.sqrt(np.mean((pred - ds["energy_per_atom"].values[test]) ** 2)) * 1000
    assert model.metrics["test"]["rmse_mev"] == pytest.approx(rmse, rel=1e-4)


def test_training_is_the_same_streamed_or_resident(store, tmp_path, monkeypatch):
    """The CNN trained with its features resident on the device (read once) and streamed from
    the store every epoch (no cache): the same learning curve and predictions."""
    from phstore.training import neural

    config = NeuralConfig.cnn(epochs=3, batch_size=4)
    resident = train("cnn", store, "C125", tmp_path / "resident", config, progress=False)
    monkeypatch.setattr(neural, "CACHE_BYTES", 0)
    reads = []
    original = FeatureStore.read_rows
    monkeypatch.setattr(FeatureStore, "read_rows", lambda *a, **k: reads.append(a[2]) or original(*a, **k))
    streamed = train("cnn", store, "C125", tmp_path / "streamed", config, progress=False)
    histogram_reads = [g for g in reads if g == PH().group]
    assert len(histogram_reads) >= config.epochs * len(resident.train["C125"]) // open_store(store).chunk_size
    for a, b in zip(resident.metrics["history"], streamed.metrics["history"], strict=True):
        assert a["train_rmse_mev"] == pytest.approx(b["train_rmse_mev"], rel=1e-6)
        assert a["test_rmse_mev"] == pytest.approx(b["test_rmse_mev"], rel=1e-6)
    assert resident.metrics["test"]["rmse_mev"] == pytest.approx(streamed.metrics["test"]["rmse_mev"], rel=1e-6)


def test_scaler_is_fit_on_the_training_split_only(store, tmp_path):
    import shutil

    config = NeuralConfig.soap_mlp(epochs=1, batch_size=4)
    model = train(config.kind, store, "C125", tmp_path / "a", config, progress=False)
    copy = shutil.copytree(store, tmp_path / "copy.zarr")
    s = FeatureStore(copy, mode="a")
    with s.writer("test"):
        for row in model.test["C125"]:
            region = slice(int(row), int(row) + 1)
            mean = s.read_rows("C125", SOAP().group, region, ["mean"])["mean"] + 5
            s.commit_rows("C125", SOAP().group, region, {"mean": mean}, [DONE])
    again = train(config.kind, copy, "C125", tmp_path / "b", config, progress=False)
    a, b = load_model_dir(model.path).state(), load_model_dir(again.path).state()
    for name in ("input_mean", "input_scale"):
        np.testing.assert_array_equal(a[name], b[name])
    for name in ("target_mean", "target_std"):
        assert a[name] == b[name]
    assert again.metrics["test"]["rmse_mev"] != model.metrics["test"]["rmse_mev"]


def test_stream_spans_collections(tmp_path, client):
    """Two cell sizes of one dataset: positions run through both collections in order."""
    write_trajectory(tmp_path / "d" / "small.xyz", 5, n_side=4, seed=1)
    write_trajectory(tmp_path / "d" / "large.xyz", 3, n_side=5, seed=2)
    ingest(tmp_path / "s.zarr", [tmp_path / "d"], chunk_size=2, progress=False, dataset="d")
    assert featurize(tmp_path / "s.zarr", SOAP(), client, progress=False).computed == 8
    s = open_store(tmp_path / "s.zarr")
    data = TrainingData.select(s, ["C125", "C64"], None, Split(seed=3))
    assert [c for c, _ in data.parts] == ["C125", "C64"] and len(data) == 8
    expected = np.concatenate([s.descriptor(c, SOAP().group)["mean"].values for c in ("C125", "C64")])
    seen = np.full((8, 360), np.nan, dtype=np.float32)
    for pos, x in ChunkStream(s, data.parts, [(SOAP().group, "mean")]).batches(
        np.arange(8), 3, np.random.default_rng(0)
    ):
        seen[pos.numpy()] = x.numpy()
    np.testing.assert_array_equal(seen, expected)
    model = train(
        "soap-mlp",
        tmp_path / "s.zarr",
        ["C125", "C64"],
        tmp_path / "m",
        NeuralConfig.soap_mlp(epochs=2),
        progress=False,
    )
    assert sum(len(v) for v in model.test.values()) == round(0.2 * 8) and model.metrics["test"]["n"] == 2


def test_unknown_network_kind_or_optimizer_is_refused_with_the_choices(store, tmp_path):
    with pytest.raises(ValueError, match="unknown network kind 'transformer'; choose one of"):
        build_network(NeuralConfig(kind="transformer"), [(128, 128)])
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adam, not 'rmsprop'"):
        NeuralConfig.cnn(optimizer="rmsprop", epochs=1)
    with pytest.raises(ValueError, match="unknown model kind 'svm'; choose one of"):
        train("svm", store, "C125", tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("kind", ["cnn", "soap-mlp"])
def test_interrupted_training_resumes_where_it_stopped(store, tmp_path, monkeypatch, kind):
    """A fit interrupted after its second epoch's checkpoint, trained again into the same
    directory: it runs only the epochs left and ends with the weights and learning curve of
    an uninterrupted fit; a checkpoint of other parameters is not resumed."""
    from phstore.training import checkpoint, neural

    preset = NeuralConfig.cnn if kind == "cnn" else NeuralConfig.soap_mlp
    config = preset(epochs=5, batch_size=4, milestones=(2,))
    whole = train(kind, store, "C125", tmp_path / "whole", config, progress=False)
    assert not (whole.path / checkpoint.CHECKPOINT).exists()

    ran = record_epochs(monkeypatch, neural)
    die_after = interrupt_after_checkpoint(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(kind, store, "C125", tmp_path / "cut", config, progress=False)
    assert ran == [0, 1] and (tmp_path / "cut" / checkpoint.CHECKPOINT).is_file()
    assert not (tmp_path / "cut" / "model.json").exists()

    ran.clear()
    resumed = train(kind, store, "C125", tmp_path / "cut", config, progress=False)
    assert ran == [2, 3, 4] and not (tmp_path / "cut" / checkpoint.CHECKPOINT).exists()
    assert resumed.metrics["resumed_at_epoch"] == 3 and "resumed_at_epoch" not in whole.metrics
    assert_same_training(whole, resumed)

    # interrupted after the last epoch (while predicting every row): no epoch runs again
    die_after[:] = [5]
    ran.clear()
    with pytest.raises(KeyboardInterrupt):
        train(kind, store, "C125", tmp_path / "last", config, progress=False)
    assert ran == [0, 1, 2, 3, 4] and not (tmp_path / "last" / "model.json").exists()
    ran.clear()
    assert_same_training(whole, train(kind, store, "C125", tmp_path / "last", config, progress=False))
    assert ran == [] and not (tmp_path / "last" / checkpoint.CHECKPOINT).exists()

    die_after[:] = [2]
    with pytest.raises(KeyboardInterrupt):
        train(kind, store, "C125", tmp_path / "other", config, progress=False)
    ran.clear()
    die_after.clear()
    train(kind, store, "C125", tmp_path / "other", preset(epochs=5, batch_size=4, lr=0.01), progress=False)
    assert ran == [0, 1, 2, 3, 4]
