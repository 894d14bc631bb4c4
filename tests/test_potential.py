"""SchNet as a potential: trained on energies and forces, run in ASE through phstore.calculator.

The labels come from ASE's EMT calculator (a smooth many-body potential with carbon
parameters), called directly: an independent source of energies and forces."""

import dataclasses
import json

import ase.io
import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

import phstore
from phstore.descriptors import SchNet
from phstore.ingest import ingest
from phstore.modeldir import load_model_dir
from phstore.training.params import SchNetConfig
from phstore.training.split import Split
from phstore.training.train import train
from tests.helpers import assert_same_training, carbon_frame, interrupt_after_checkpoint, record_epochs

N_FRAMES = 16
CONFIG = SchNetConfig(n_atom_basis=16, n_interactions=2, n_rbf=20, epochs=8, batch_size=4, lr=1e-3, force_weight=1.0)


def emt_frames(n: int, seed: int = 0, forces: bool = True) -> list:
    """64-atom carbon cells labelled by EMT (energy in eV, forces in eV/Å)."""
    frames = []
    for i in range(n):
        atoms = carbon_frame(4, seed=seed + i)
        atoms.calc = EMT()
        energy, f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, **({"forces": f} if forces else {}))
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def potential(tmp_path_factory):
    """A SchNet trained on the energies and forces of 16 EMT frames (8 epochs)."""
    work = tmp_path_factory.mktemp("potential")
    ase.io.write(work / "emt.xyz", emt_frames(N_FRAMES), format="extxyz")
    ingest(work / "s.zarr", [work / "emt.xyz"], chunk_size=4, progress=False)
    train("schnet", work / "s.zarr", "C64", work / "model", CONFIG, Split(seed=0), progress=False)
    return work / "model"


def test_forces_are_minus_the_gradient_of_the_energy(potential):
    atoms = carbon_frame(4, seed=99)
    atoms.calc = phstore.calculator(potential)
    forces = atoms.get_forces()
    h = 1e-4
    for i, axis in [(0, 0), (17, 1), (42, 2)]:
        energies = []
        for step in (h, -h):
            moved = atoms.copy()
            moved.calc = atoms.calc
            moved.positions[i, axis] += step
            energies.append(moved.get_potential_energy())
        assert -(energies[0] - energies[1]) / (2 * h) == pytest.approx(forces[i, axis], abs=1e-6)
    assert np.abs(forces).max() > 1e-3  # not a flat model


def test_nve_md_conserves_energy(potential):
    """100 velocity-Verlet steps of 0.5 fs at 300 K: the total energy stays within 1e-4 eV/atom
    (measured: 3e-6) while the potential energy moves far more."""
    atoms = carbon_frame(4, seed=7)
    atoms.calc = phstore.calculator(potential)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, 0.5 * units.fs)
    total, potential_energy = [], []
    for _ in range(100):
        dynamics.run(1)
        total.append(atoms.get_total_energy())
        potential_energy.append(atoms.get_potential_energy())
    drift = (max(total) - min(total)) / len(atoms)
    assert drift < 1e-4
    assert (max(potential_energy) - min(potential_energy)) / len(atoms) > 10 * drift


def test_force_metrics_equal_an_independent_computation(potential):
    """The model directory's test force RMSE (meV/Å) is the RMSE of the calculator's forces on the
    test frames against EMT's, computed here; so is its energy RMSE (meV/atom: the energies come
    from the same pass as the forces)."""
    meta = json.loads((potential / "model.json").read_text())
    store = phstore.open_store(potential.parent / "s.zarr")
    test_rows = load_model_dir(potential, "schnet").test["C64"]
    calc = phstore.calculator(potential)
    errors, energy_errors = [], []
    frames = store.atoms("C64", slice(0, N_FRAMES))
    for row in test_rows:
        atoms = frames[row]
        reference = atoms.copy()
        reference.calc = EMT()
        atoms.calc = calc
        errors.append(atoms.get_forces() - reference.get_forces())
        energy_errors.append((atoms.get_potential_energy() - reference.get_potential_energy()) / len(atoms))
    rmse = float(np.sqrt(np.mean(np.concatenate(errors) ** 2)) * 1000)
    test = meta["metrics"]["test"]
    assert test["force_rmse_mev_per_a"] == pytest.approx(rmse, rel=1e-3)
    assert test["rmse_mev"] == pytest.approx(float(np.sqrt(np.mean(np.square(energy_errors))) * 1000), rel=1e-3)
    assert test["force_components"] == 3 * 64 * len(test_rows)
    history = meta["metrics"]["history"]
    assert history[-1]["test_force_rmse_mev_per_a"] == pytest.approx(test["force_rmse_mev_per_a"], rel=1e-6)
    assert history[-1]["train_force_rmse_mev_per_a"] < history[0]["train_force_rmse_mev_per_a"]  # it learns them


def test_embeddings_of_a_potential_feed_the_schnet_descriptor(potential):
    result = SchNet.from_model(potential).compute(carbon_frame(4, seed=3))
    assert result.error is None and np.isfinite(result.values["mean"]).all()


def test_calculator_refuses_species_it_was_not_trained_on(potential):
    atoms = carbon_frame(4, seed=1)
    atoms.numbers[0] = 14
    atoms.calc = phstore.calculator(potential)
    with pytest.raises(ValueError, match=r"trained on atomic numbers \[6\], not \[14\]"):
        atoms.get_potential_energy()


def test_force_weight_without_forces_is_a_clear_error(tmp_path):
    ase.io.write(tmp_path / "e.xyz", emt_frames(6, seed=50, forces=False), format="extxyz")
    ingest(tmp_path / "s.zarr", [tmp_path / "e.xyz"], chunk_size=2, progress=False)
    with pytest.raises(ValueError, match="no forces"):
        train("schnet", tmp_path / "s.zarr", "C64", tmp_path / "m", CONFIG, progress=False)


def test_compare_shows_the_force_error(potential, capsys):
    from phstore.cli import main

    assert main(["compare", "--store", str(potential.parent / "s.zarr"), "--models", str(potential.parent)]) == 0
    out = capsys.readouterr().out
    test = json.loads((potential / "model.json").read_text())["metrics"]["test"]
    row = next(line for line in out.splitlines() if " schnet " in line)
    assert row.split()[-1] == f"{test['force_rmse_mev_per_a']:.0f}" and "forces' RMSE in meV/Å" in out
    assert row.split()[2] == "positions"  # what it was trained on: no stored features


def test_interrupted_training_resumes_where_it_stopped(tmp_path, monkeypatch):
    """SchNet on energies and forces, interrupted after its first epoch's checkpoint and
    trained again into the same directory: the remaining epochs only, and the weights of an
    uninterrupted fit (to float32 rounding: schnetpack's sums over neighbours are not
    bit-reproducible on CPU threads)."""
    from phstore.training import schnet

    ase.io.write(tmp_path / "emt.xyz", emt_frames(8), format="extxyz")
    ingest(tmp_path / "s.zarr", [tmp_path / "emt.xyz"], chunk_size=4, progress=False)
    config = dataclasses.replace(CONFIG, epochs=3)
    whole = train("schnet", tmp_path / "s.zarr", "C64", tmp_path / "whole", config, progress=False)
    ran = record_epochs(monkeypatch, schnet)
    interrupt_after_checkpoint(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train("schnet", tmp_path / "s.zarr", "C64", tmp_path / "cut", config, progress=False)
    ran.clear()
    resumed = train("schnet", tmp_path / "s.zarr", "C64", tmp_path / "cut", config, progress=False)
    assert ran == [1, 2]
    assert_same_training(whole, resumed, rtol=1e-4)
    assert "test_force_rmse_mev_per_a" in resumed.metrics["history"][0]


def test_training_interrupted_in_the_middle_of_an_epoch_resumes_at_its_next_batch(tmp_path, monkeypatch):
    """A SchNet epoch is long (~90 min at paper scale on a CPU), so its checkpoint is written
    between batches too: interrupted after the first batch of its second epoch, the training
    resumes at that epoch's second batch (not at the epoch's start) and ends with the weights
    and learning curve of an uninterrupted fit."""
    from phstore.training import schnet

    ase.io.write(tmp_path / "emt.xyz", emt_frames(8), format="extxyz")
    ingest(tmp_path / "s.zarr", [tmp_path / "emt.xyz"], chunk_size=4, progress=False)
    config = dataclasses.replace(CONFIG, epochs=3, batch_size=2)
    whole = train("schnet", tmp_path / "s.zarr", "C64", tmp_path / "whole", config, progress=False)
    interrupt_after_checkpoint(monkeypatch, 1, within=True)
    with pytest.raises(KeyboardInterrupt):
        train("schnet", tmp_path / "s.zarr", "C64", tmp_path / "cut", config, progress=False)
    monkeypatch.undo()
    ran = record_epochs(monkeypatch, schnet)
    steps = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: steps.append(1) or step(self, *a, **k))
    resumed = train("schnet", tmp_path / "s.zarr", "C64", tmp_path / "cut", config, progress=False)
    assert ran == [1, 2]
    per_epoch = -(-resumed.metrics["snapshots"]["train"] // config.batch_size)
    assert per_epoch > 1 and len(steps) == 2 * per_epoch - 1  # epoch 2 but its first batch, epoch 3
    assert_same_training(whole, resumed, rtol=1e-4)
