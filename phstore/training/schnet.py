"""SchNet (schnetpack) trained on stored positions and energies per atom (one or more
collections), and on forces when asked: a machine-learning potential with an ASE calculator.

Seed paper §2.4: 100-dimensional atom basis, 60 Gaussians with centres on 0–5 Å, cosine
cutoff at 5 Å, an atom-wise energy head; the loss is the MSE of the mean energy per atom. The
Gaussian widths are schnetpack's default (the centre spacing, 0.085 Å); the paper's text gives
γ = 0.1 Å⁻², which would make every Gaussian wider than the cutoff, so it is not used.

With ``force_weight`` > 0 the loss adds that weight times the MSE of the forces' components,
each divided by their root mean square over the training set: the forces are minus the gradient of the model's energy
(eV) with respect to the positions (autograd), so the model is a conservative potential, and
:func:`calculator` runs it in ASE (molecular dynamics, relaxations).

The output of the last interaction block (schnetpack's ``scalar_representation``) is the
SchNet descriptor (:mod:`phstore.descriptors.schnet`, which defines the network).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from phstore.compat import import_schnetpack
from phstore.descriptors.schnet import architecture, build_schnet, converter
from phstore.features import Rows
from phstore.metrics import regression_metrics
from phstore.training.checkpoint import Checkpoint, batch_bar, epochs
from phstore.training.model import Model


def energy_and_forces(net, inputs: dict, mean: float, std: float, training: bool = False) -> tuple:
    """The network's standardised energy per atom of each frame of a converted batch, the
    frames' energies (eV) and the forces on its atoms (eV/Å, atoms of the batch × 3: minus the
    gradient of the energy). ``training`` keeps the graph of the forces, to train on them."""
    import torch

    properties = import_schnetpack().properties
    positions = inputs[properties.R].requires_grad_(True)
    y = net(inputs)["y"]
    energy = (y * std + mean) * inputs[properties.n_atoms]
    (gradient,) = torch.autograd.grad(energy.sum(), positions, create_graph=training)
    return y, energy, -gradient


class SchNetModel(Model):
    """SchNet of :class:`~phstore.training.params.SchNetConfig`, trained with Adam on the MSE
    of the z-scored energy per atom (plus ``force_weight`` times the MSE of the forces over
    their training root mean square).

    Learned: ``net_`` (the torch module), ``target_mean_`` and ``target_std_`` (eV/atom),
    ``force_scale_`` (eV/Å: the root mean square of the training forces' components; 1 when
    trained on energies only), ``species_`` (the atomic numbers it saw) and ``history_`` (per epoch: train and test
    RMSE, meV/atom, and of the forces, meV/Å, when trained on them, and seconds).
    """

    packages = ("schnetpack", "torch")

    def network(self, inputs: dict) -> Any:
        return build_schnet(*architecture(dataclasses.asdict(self.params)))

    def fit(
        self,
        X: Rows,
        y: np.ndarray,
        eval_set: tuple[Rows, np.ndarray] | None = None,
        seed: int = 0,
        progress: bool = False,
        checkpoint: Checkpoint | None = None,
    ) -> "SchNetModel":
        import torch

        p = self.params
        weighted = p.force_weight > 0
        frames = X.atoms(forces=weighted)
        tested = eval_set[0].atoms(forces=weighted) if eval_set is not None and len(eval_set[0]) else None
        self.target_mean_, self.target_std_ = float(y.mean()), float(y.std() or 1.0)
        self.species_ = np.array(sorted({int(z) for atoms in frames for z in atoms.numbers}), dtype=np.int64)
        self.force_scale_ = 1.0
        if weighted:
            components = np.concatenate([a.arrays["forces"] for a in frames]).ravel()
            components = components[np.isfinite(components)]
            if not len(components):
                raise ValueError(
                    "force_weight > 0 but the training snapshots have no forces; ingest sources that "
                    "carry them (extxyz, OUTCAR, vasprun.xml) or train with force_weight 0"
                )
            self.force_scale_ = float(np.sqrt(np.mean(components**2))) or 1.0
        torch.manual_seed(seed)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.net_ = self.network(X.info).to(device)
        convert = converter(p.cutoff, device)
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=p.lr)
        target = torch.tensor((y - self.target_mean_) / self.target_std_, dtype=torch.float32, device=device)
        rng = np.random.default_rng(seed)
        self.history_ = []
        parts = {"net": self.net_, "optimizer": optimizer}
        for epoch in epochs(p.epochs, checkpoint, parts, rng, self.history_, "train schnet", progress):
            started = time.perf_counter()
            self.net_.train()
            # An epoch takes ~90 min on 2 CPU cores at paper scale: it is checkpointed half-way too.
            within = checkpoint.within_epoch() if checkpoint is not None else None
            if within is None:
                order, first, elapsed = rng.permutation(len(frames)), 0, 0.0
                energy_se, force_se, force_n = 0.0, 0.0, 0
            else:
                order, first, elapsed = np.asarray(within["order"]), within["step"], within["seconds"]
                energy_se, force_se, force_n = within["sums"]
            steps = range(first, len(order), p.batch_size)
            for lo in batch_bar(steps, len(order), p.batch_size, f"epoch {epoch + 1}", progress, first):
                batch = order[lo : lo + p.batch_size]
                optimizer.zero_grad()
                inputs = convert([frames[i] for i in batch])
                if weighted:
                    z, _, forces = energy_and_forces(self.net_, inputs, self.target_mean_, self.target_std_, True)
                    true = torch.from_numpy(np.concatenate([frames[i].arrays["forces"] for i in batch])).to(forces)
                    known = torch.isfinite(true)
                    error = (forces - true.nan_to_num())[known] / self.force_scale_
                    force_loss = (error**2).mean() if len(error) else torch.zeros((), device=device)
                    force_se += float(force_loss.detach()) * len(error)
                    force_n += len(error)
                else:
                    z = self.net_(inputs)["y"]
                energy_loss = torch.nn.functional.mse_loss(z, target[batch])
                loss = energy_loss + p.force_weight * force_loss if weighted else energy_loss
                loss.backward()
                optimizer.step()
                energy_se += float(energy_loss.detach()) * len(batch)
                if checkpoint is not None and lo + p.batch_size < len(order) and checkpoint.due():
                    done = {
                        "order": order.tolist(),
                        "step": lo + p.batch_size,
                        "sums": [energy_se, force_se, force_n],
                        "seconds": elapsed + time.perf_counter() - started,
                    }
                    checkpoint.save(epoch, parts, rng, self.history_, within=done)
            record = {
                "epoch": epoch + 1,
                "train_rmse_mev": float(np.sqrt(energy_se / len(frames)) * self.target_std_ * 1000),
            }
            if weighted:
                force_rmse = np.sqrt(force_se / max(force_n, 1)) * self.force_scale_
                record["train_force_rmse_mev_per_a"] = float(force_rmse * 1000)
            if tested is not None:
                energies, forces = self._predict(tested, forces=weighted)
                record["test_rmse_mev"] = regression_metrics(eval_set[1], energies)["rmse_mev"]
                if weighted:
                    record |= _force_metrics(tested, forces, "test_")
            record["seconds"] = elapsed + time.perf_counter() - started
            self.history_.append(record)
        return self

    def predict(self, X: Rows, progress: bool = False) -> np.ndarray:
        return self._predict(X.atoms(), progress=progress)[0]

    def evaluate(self, X: Rows, progress: bool = False) -> tuple[np.ndarray, dict[str, float]]:
        """Energies per atom (eV/atom) of rows ``X`` and, when some rows have forces, the RMSE
        and MAE (meV/Å) of the predicted forces and their count of components, from one pass."""
        frames = X.atoms(forces=True)
        known = any(np.isfinite(a.arrays["forces"]).any() for a in frames)
        energies, forces = self._predict(frames, forces=known, progress=progress)
        return energies, _force_metrics(frames, forces) if known else {}

    def _predict(
        self, frames: Sequence[Atoms], forces: bool = False, progress: bool = False
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Energies per atom (eV/atom) of ``frames`` and, if ``forces``, the forces on their
        atoms (eV/Å, one array per frame); a progress bar of the batches if ``progress``."""
        import torch

        device = next(self.net_.parameters()).device.type
        convert = converter(self.params.cutoff, device)
        energies, out_forces = [], []
        self.net_.eval()
        size = self.params.batch_size
        for lo in batch_bar(range(0, len(frames), size), len(frames), size, "predict", progress):
            batch = list(frames[lo : lo + size])
            inputs = convert(batch)
            if forces:
                z, _, f = energy_and_forces(self.net_, inputs, self.target_mean_, self.target_std_)
                out_forces += np.split(f.detach().cpu().numpy(), np.cumsum([len(a) for a in batch])[:-1])
            else:
                with torch.no_grad():
                    z = self.net_(inputs)["y"]
            energies.append(z.detach().cpu().numpy())
        z = np.concatenate(energies) if energies else np.empty(0)
        return z * float(self.target_std_) + float(self.target_mean_), out_forces


def _force_metrics(frames: Sequence[Atoms], predicted: Sequence[np.ndarray], prefix: str = "") -> dict[str, float]:
    """RMSE and MAE (meV/Å) of ``predicted`` forces against the forces ``frames`` carry (their
    finite components; nothing when there are none)."""
    if not len(frames):
        return {}
    true = np.concatenate([a.arrays["forces"] for a in frames]).ravel()
    err = (np.concatenate(predicted).ravel() - true)[np.isfinite(true)]
    if not len(err):
        return {}
    return {
        f"{prefix}force_rmse_mev_per_a": float(np.sqrt(np.mean(err**2)) * 1000),
        f"{prefix}force_mae_mev_per_a": float(np.mean(np.abs(err)) * 1000),
        f"{prefix}force_components": int(len(err)),
    }


class SchNetCalculator(Calculator):
    """An ASE calculator of a trained :class:`SchNetModel`: energy (eV) and forces (eV/Å, minus
    its gradient) of periodic frames of the species it was trained on, in float64."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: SchNetModel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.species = [int(z) for z in np.asarray(model.species_)]
        self.net = copy.deepcopy(model.net_).double().eval()
        self.convert = converter(model.params.cutoff, next(self.net.parameters()).device.type, double=True)

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        unknown = sorted(set(self.atoms.numbers.tolist()) - set(self.species))
        if unknown:
            raise ValueError(f"the model was trained on atomic numbers {self.species}, not {unknown}")
        _, energy, forces = energy_and_forces(
            self.net, self.convert(self.atoms), float(self.model.target_mean_), float(self.model.target_std_)
        )
        self.results["energy"] = self.results["free_energy"] = float(energy.detach().sum())
        self.results["forces"] = forces.detach().cpu().numpy().astype(float)


def calculator(model_dir: str | Path) -> SchNetCalculator:
    """The ASE calculator of the SchNet model directory ``model_dir`` (written by ``phstore
    train schnet``): ``atoms.calc = calculator(path)``, then ASE's MD or optimisers."""
    from phstore.modeldir import load_model_dir
    from phstore.training.train import load_model

    model = load_model(load_model_dir(model_dir, "schnet"))
    return SchNetCalculator(model)
