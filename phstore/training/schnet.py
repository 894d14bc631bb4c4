"""SchNet (schnetpack) trained on stored positions and energies per atom (one or more collections).

Seed paper §2.4: 100-dimensional atom basis, 60 Gaussians with centres on 0–5 Å, cosine
cutoff at 5 Å, an atom-wise energy head; the loss is the MSE of the mean energy per atom. The
Gaussian widths are schnetpack's default (the centre spacing, 0.085 Å); the paper's text gives
γ = 0.1 Å⁻², which would make every Gaussian wider than the cutoff, so it is not used.

The output of the last interaction block (schnetpack's ``scalar_representation``) is the
SchNet descriptor; :func:`embed` computes it and :mod:`phstore.descriptors.schnet` stores it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from phstore.compat import import_schnetpack
from phstore.store import FeatureStore
from phstore.training.data import TARGET, Parts, TrainingData
from phstore.training.modeldir import ModelDir
from phstore.training.params import SchNetArchitecture, SchNetTraining
from phstore.training.split import Split

KIND = "schnet"


def build_schnet(arch: SchNetArchitecture):
    """An untrained schnetpack ``NeuralNetworkPotential`` whose output ``y`` is the atom-mean of
    the atom-wise head (standardised energy per atom)."""
    spk = import_schnetpack()
    representation = spk.representation.SchNet(
        n_atom_basis=arch.n_atom_basis,
        n_interactions=arch.n_interactions,
        radial_basis=spk.nn.GaussianRBF(n_rbf=arch.n_rbf, cutoff=arch.cutoff),
        cutoff_fn=spk.nn.CosineCutoff(arch.cutoff),
    )
    return spk.model.NeuralNetworkPotential(
        representation=representation,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[spk.atomistic.Atomwise(n_in=arch.n_atom_basis, output_key="y", aggregation_mode="avg")],
    )


def converter(arch: SchNetArchitecture, device: str = "cpu"):
    """schnetpack's ``AtomsConverter`` (matscipy's periodic neighbour list at the cutoff, float32)."""
    spk = import_schnetpack()
    import torch

    return spk.interfaces.AtomsConverter(
        neighbor_list=spk.transform.MatScipyNeighborList(cutoff=arch.cutoff), device=device, dtype=torch.float32
    )


def embed(model, inputs: dict) -> Any:
    """Per-atom output of the last interaction block (atoms of the batch × n_atom_basis)."""
    for module in model.input_modules:
        inputs = module(inputs)
    return model.representation(inputs)["scalar_representation"]


def architecture_of(model_dir: ModelDir) -> SchNetArchitecture:
    return SchNetArchitecture(**model_dir.config["architecture"])


def _predict(model, convert, frames: Sequence[Atoms], batch_size: int, mean: float, std: float) -> np.ndarray:
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for lo in range(0, len(frames), batch_size):
            out.append(model(convert(list(frames[lo : lo + batch_size])))["y"].cpu().numpy())
    return np.concatenate(out) * std + mean if out else np.empty(0)


def _frames(store: FeatureStore, parts: Parts) -> list[Atoms]:
    """The snapshots of every part, in order."""
    out = []
    for coll, rows in parts:
        every = store.atoms(coll, slice(0, store.n_snapshots(coll)))
        out += [every[i] for i in rows]
    return out


def train_schnet(
    store_path: str | Path,
    collections: str | Sequence[str],
    out: str | Path,
    arch: SchNetArchitecture = SchNetArchitecture(),
    training: SchNetTraining = SchNetTraining(),
    split: Split = Split(),
    dataset: str | None = None,
    progress: bool = True,
) -> ModelDir:
    """Train SchNet on the energies per atom (eV/atom) of one or more collections (one ``dataset``,
    see :func:`phstore.training.data.training_rows`) and write a model directory
    (:mod:`phstore.training.modeldir`) to ``out``.

    Metrics are RMSE/MAE in meV/atom and R² on the train and test sets; the split, seed and
    the store's identity are recorded as provenance.
    """
    import torch

    data = TrainingData.select(FeatureStore(store_path, mode="r"), collections, dataset, split)
    frames = _frames(data.store, data.parts)
    target, train = data.target, data.train
    mean, std = float(target[train].mean()), float(target[train].std() or 1.0)

    torch.manual_seed(split.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_schnet(arch).to(device)
    convert = converter(arch, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=training.lr)
    y = torch.tensor((target - mean) / std, dtype=torch.float32, device=device)
    rng = np.random.default_rng(split.seed)
    history = []
    for epoch in tqdm(range(training.epochs), desc=f"train schnet on {data.name}", unit="epoch", disable=not progress):
        model.train()
        order = rng.permutation(train)
        losses = []
        for lo in range(0, len(order), training.batch_size):
            batch = order[lo : lo + training.batch_size]
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(convert([frames[i] for i in batch]))["y"], y[batch])
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()) * len(batch))
        history.append({"epoch": epoch + 1, "train_rmse_mev": float(np.sqrt(sum(losses) / len(train)) * std * 1000)})

    config = {
        "architecture": dataclasses.asdict(arch),
        "training": dataclasses.asdict(training),
        "split": dataclasses.asdict(split),
        "target": {"name": TARGET, "unit": "eV/atom", "mean": mean, "std": std},
        "species": sorted({int(z) for atoms in frames for z in atoms.numbers}),
    }
    predicted = _predict(model, convert, frames, training.batch_size, mean, std)
    return data.finish(out, KIND, config, model.state_dict(), predicted, ("schnetpack", "torch"), {"history": history})


def predict_schnet(model: ModelDir, store: FeatureStore, collection: str, rows: np.ndarray) -> np.ndarray:
    """Energies per atom (eV/atom) of ``rows`` of ``collection`` from their stored positions."""
    arch = architecture_of(model)
    net = build_schnet(arch)
    net.load_state_dict(model.state_dict())
    target = model.config["target"]
    batch = model.config["training"]["batch_size"]
    return _predict(net, converter(arch), _frames(store, [(collection, rows)]), batch, target["mean"], target["std"])
