"""SchNet: training from the store, model directories, and embeddings against schnetpack run directly."""

import json

import numpy as np
import pytest
import torch

from phstore.compat import import_schnetpack
from phstore.descriptors import SchNet
from phstore.descriptors.schnet import atom_batches
from phstore.ingest import ingest
from phstore.modeldir import ModelDirError, load_model_dir
from phstore.training.params import SchNetConfig
from phstore.training.split import Split
from phstore.training.train import train
from tests.helpers import carbon_frame, write_trajectory


def direct_embedding(model_path, atoms):
    """schnetpack's own classes, configured from model.json, weights loaded weights-only."""
    spk = import_schnetpack()
    meta = json.loads((model_path / "model.json").read_text())
    a = meta["config"]["params"]
    rep = spk.representation.SchNet(
        n_atom_basis=a["n_atom_basis"],
        n_interactions=a["n_interactions"],
        radial_basis=spk.nn.GaussianRBF(n_rbf=a["n_rbf"], cutoff=a["cutoff"]),
        cutoff_fn=spk.nn.CosineCutoff(a["cutoff"]),
    )
    with np.load(model_path / "weights.npz") as state:
        prefix = "net.representation."
        rep.load_state_dict(
            {k.removeprefix(prefix): torch.from_numpy(state[k]) for k in state.files if k.startswith(prefix)}
        )
    inputs = spk.interfaces.AtomsConverter(neighbor_list=spk.transform.ASENeighborList(cutoff=a["cutoff"]))(atoms)
    inputs = spk.atomistic.PairwiseDistances()(inputs)
    with torch.no_grad():
        return rep(inputs)["scalar_representation"].numpy()


def test_model_directory_records_split_metrics_and_provenance(schnet_model):
    m = load_model_dir(schnet_model, "schnet")
    train, test = m.train["C64"], m.test["C64"]
    assert len(np.intersect1d(train, test)) == 0 and sorted([*train, *test]) == list(range(12))
    assert len(test) == round(0.2 * 12)
    for part in ("train", "test"):
        assert np.isfinite(m.metrics[part]["rmse_mev"]) and m.metrics[part]["rmse_mev"] > 0
    assert len(m.metrics["history"]) == 2
    assert m.provenance["collections"] == ["C64"] and m.state()["species"].tolist() == [6]
    assert m.config["params"]["n_atom_basis"] == 100 and m.config["params"]["n_rbf"] == 60


def test_embedding_equals_schnetpack_run_directly(schnet_model):
    atoms = carbon_frame(4, density=2.4, seed=3)
    res = SchNet.from_model(schnet_model).compute(atoms)
    expected = direct_embedding(schnet_model, atoms)
    assert res.values["per_atom"].shape == (64, 100)
    np.testing.assert_allclose(res.values["per_atom"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.values["mean"], expected.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_batched_embeddings_equal_single_frames(schnet_model):
    frames = [carbon_frame(4, density=d, seed=i) for i, d in enumerate((2.0, 2.4, 3.0))]
    schnet = SchNet.from_model(schnet_model, batch_atoms=128)  # passes of two frames and of one
    batched = schnet.compute_batch(frames)
    for atoms, res in zip(frames, batched):
        np.testing.assert_allclose(
            res.values["per_atom"], schnet.compute(atoms).values["per_atom"], rtol=1e-5, atol=1e-6
        )


def test_forward_passes_hold_at_most_batch_atoms():
    assert atom_batches([64, 64, 64, 512, 64, 216, 216], 192) == [[0, 1, 2], [3], [4], [5], [6]]
    assert atom_batches([216] * 5, 512) == [[0, 1], [2, 3], [4]]
    assert atom_batches([], 512) == []


def test_the_key_follows_the_weights(schnet_model, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(schnet_model, copy)
    assert SchNet.from_model(copy).params == SchNet.from_model(schnet_model).params  # moved: same key
    other = tmp_path / "other"
    store = schnet_model.parent / "s.zarr"
    train("schnet", store, "C64", other, SchNetConfig(n_interactions=2, epochs=1, batch_size=4), Split(seed=1))
    assert SchNet.from_model(other).group != SchNet.from_model(schnet_model).group


def test_corrupt_and_foreign_checkpoints_are_clear_errors(schnet_model, tmp_path):
    import shutil

    with pytest.raises(ModelDirError, match="not a phstore model directory"):
        SchNet.from_model(tmp_path)
    bad = tmp_path / "corrupt"
    shutil.copytree(schnet_model, bad)
    (bad / "weights.npz").write_bytes(b"not an array file")
    with pytest.raises(ModelDirError, match="does not match the SHA-256"):
        SchNet.from_model(bad).compute(carbon_frame(4))
    # a foreign file whose hash is made to match: loading refuses its pickled object
    foreign = tmp_path / "foreign"
    shutil.copytree(schnet_model, foreign)
    np.savez(foreign / "weights.npz", model=np.array([{"code": "runs on load"}], dtype=object))
    meta = json.loads((foreign / "model.json").read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256((foreign / "weights.npz").read_bytes()).hexdigest()
    (foreign / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match="not a plain array file"):
        load_model_dir(foreign).state()
    meta["format"] = "phstore-model-1"
    (foreign / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match="older phstore: train the model again"):
        load_model_dir(foreign)
    (foreign / "model.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="corrupt"):
        load_model_dir(foreign)


def test_mixed_datasets_need_a_choice(tmp_path):
    write_trajectory(tmp_path / "a.xyz", 4, seed=1)
    write_trajectory(tmp_path / "b.xyz", 4, seed=2)
    ingest(tmp_path / "s.zarr", [tmp_path / "a.xyz", tmp_path / "b.xyz"], progress=False)
    with pytest.raises(ValueError, match="choose one with dataset"):
        train("schnet", tmp_path / "s.zarr", "C64", tmp_path / "m", SchNetConfig(epochs=1), progress=False)
    m = train(
        "schnet",
        tmp_path / "s.zarr",
        "C64",
        tmp_path / "m",
        SchNetConfig(n_interactions=1, epochs=1, batch_size=4),
        dataset="b",
        progress=False,
    )
    assert sorted([*m.train["C64"], *m.test["C64"]]) == [4, 5, 6, 7] and m.provenance["dataset"] == "b"


def test_too_few_snapshots_are_refused_with_what_to_do(tmp_path):
    write_trajectory(tmp_path / "a.xyz", 3, seed=1)
    ingest(tmp_path / "s.zarr", [tmp_path / "a.xyz"], progress=False)
    with pytest.raises(ValueError, match="only 3 of the 3 snapshots of dataset 'a' in C64 can be used .* at least 4"):
        train("schnet", tmp_path / "s.zarr", "C64", tmp_path / "m", SchNetConfig(epochs=1), progress=False)
    assert not (tmp_path / "m").exists()


def test_energies_of_two_codes_under_one_dataset_name_are_refused(tmp_path):
    """A CASTEP-like and a VASP-like file ingested as one dataset (~150 eV/atom apart): training
    names the extreme snapshots instead of fitting across the offset."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = [carbon_frame(4, seed=i) for i in range(8)]
    for atoms in frames[4:]:  # the second code's reference: 150 eV/atom higher
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy() + 150 * len(atoms))
    ase.io.write(tmp_path / "castep.xyz", frames[:4], format="extxyz")
    ase.io.write(tmp_path / "vasp.xyz", frames[4:], format="extxyz")
    ingest(tmp_path / "s.zarr", [tmp_path / "castep.xyz", tmp_path / "vasp.xyz"], dataset="mixed", progress=False)
    with pytest.raises(
        ValueError,
        match=r"dataset 'mixed' span -\S+ \(C64 snapshot \d: \S*castep.xyz frame \d\) … \S+ eV/atom "
        r"\(C64 snapshot \d: \S*vasp.xyz frame \d\), wider than 10",
    ):
        train("schnet", tmp_path / "s.zarr", "C64", tmp_path / "m", SchNetConfig(epochs=1), progress=False)
