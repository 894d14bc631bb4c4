"""The paper's CNN and the SOAP MLP trained from the store: streaming, learning curve, outputs."""

import numpy as np
import pytest
import torch

from phstore import open_store
from phstore.descriptors import PH, SOAP
from phstore.featurize import featurize
from phstore.ingest import ingest
from phstore.training.data import TrainingData
from phstore.training.modeldir import load_model_dir
from phstore.training.neural import ChunkStream, NeuralConfig, build_network, train_neural
from phstore.training.split import Split
from tests.helpers import write_trajectory


@pytest.fixture(scope="module")
def store(tmp_path_factory, client):
    tmp = tmp_path_factory.mktemp("neural")
    for run, density in enumerate((2.0, 2.6, 3.2)):
        write_trajectory(tmp / "data" / f"run{run}.xyz", 5, density=density, n_side=5, seed=run)
    ingest(tmp / "s.zarr", [tmp / "data"], chunk_size=4, progress=False)
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
    mlp = build_network(NeuralConfig.soap_mlp(), [(360,)])
    assert [m.out_features for m in mlp if isinstance(m, torch.nn.Linear)] == [40, 40, 1]
    c = NeuralConfig.cnn()
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.milestones, c.epochs) == (
        "sgd", 0.0015, 0.9, 0.001, (200, 400, 800, 1200), 1600)
    m = NeuralConfig.soap_mlp()
    assert (m.optimizer, m.lr, m.milestones, m.epochs) == ("adam", 0.001, (200, 500, 1000), 2000)


def test_stream_reads_one_chunk_at_a_time_and_covers_every_row(store):
    s = open_store(store)
    data = TrainingData.select(s, "C125", None, Split())
    group = PH().group
    stream = ChunkStream(s, "C125", data.rows, [(group, "histogram"), (SOAP().group, "mean")])
    seen = []
    direct = s.descriptor("C125", group)["histogram"].values
    soap = s.descriptor("C125", SOAP().group)["mean"].values
    for pos, x in stream.batches(data.train, 3, np.random.default_rng(0)):
        assert len(set(data.rows[pos] // s.chunk_size)) == 1  # a batch never spans two chunks
        np.testing.assert_array_equal(x[:, :128 * 128], direct[data.rows[pos]].reshape(len(pos), -1))
        np.testing.assert_array_equal(x[:, 128 * 128:], soap[data.rows[pos]])
        seen += pos.tolist()
    assert sorted(seen) == sorted(data.train.tolist())


@pytest.mark.parametrize("config", [NeuralConfig.cnn(epochs=3, batch_size=4), NeuralConfig.soap_mlp(epochs=30, batch_size=4),
                                    NeuralConfig.ph_soap(epochs=30, batch_size=4)], ids=["cnn", "soap-mlp", "ph-soap"])
def test_training_writes_a_complete_model(store, tmp_path, config):
    model = train_neural(store, "C125", tmp_path / "m", config, progress=False)
    history = model.metrics["history"]
    assert len(history) == config.epochs and all(np.isfinite(h["test_rmse_mev"]) for h in history)
    assert history[-1]["train_rmse_mev"] < history[0]["train_rmse_mev"] or config.kind == "cnn"
    for png in ("parity.png", "learning-curve.png"):
        assert (model.path / png).read_bytes()[:4] == b"\x89PNG"
    state = load_model_dir(model.path).state_dict()
    net = build_network(config, [tuple(x) for x in model.config["feature_shapes"]])
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("input_")})
    # the saved network and scaler reproduce the recorded test RMSE
    ds = open_store(store).dataset("C125").load()
    x = torch.tensor(np.concatenate([ds[f"{d}_{v}"].values[model.test].reshape(len(model.test), -1)
                                     for d, v in config.features], axis=1), dtype=torch.float32)
    with torch.no_grad():
        z = net((x - state["input_mean"].float()) / state["input_scale"].float()).squeeze(1).numpy()
    pred = z * model.config["target"]["std"] + model.config["target"]["mean"]
    rmse = np.sqrt(np.mean((pred - ds["energy_per_atom"].values[model.test]) ** 2)) * 1000
    assert model.metrics["test"]["rmse_mev"] == pytest.approx(rmse, rel=1e-4)
