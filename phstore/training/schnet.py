"""SchNet (schnetpack) trained on stored positions and energies per atom (one or more collections).

Seed paper §2.4: 100-dimensional atom basis, 60 Gaussians with centres on 0–5 Å, cosine
cutoff at 5 Å, an atom-wise energy head; the loss is the MSE of the mean energy per atom. The
Gaussian widths are schnetpack's default (the centre spacing, 0.085 Å); the paper's text gives
γ = 0.1 Å⁻², which would make every Gaussian wider than the cutoff, so it is not used.

The output of the last interaction block (schnetpack's ``scalar_representation``) is the
SchNet descriptor (:mod:`phstore.descriptors.schnet`, which defines the network).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from phstore.descriptors.schnet import architecture, build_schnet, converter
from phstore.features import Rows
from phstore.metrics import regression_metrics
from phstore.training.model import Model


class SchNetModel(Model):
    """SchNet of :class:`~phstore.training.params.SchNetConfig`, trained with Adam on the MSE
    of the z-scored energy per atom.

    Learned: ``net_`` (the torch module), ``target_mean_`` and ``target_std_`` (eV/atom),
    ``species_`` (the atomic numbers it saw) and ``history_`` (per epoch: train and test RMSE,
    meV/atom).
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
    ) -> "SchNetModel":
        import torch

        p = self.params
        frames = X.atoms()
        tested = eval_set[0].atoms() if eval_set is not None and len(eval_set[0]) else None
        self.target_mean_, self.target_std_ = float(y.mean()), float(y.std() or 1.0)
        self.species_ = np.array(sorted({int(z) for atoms in frames for z in atoms.numbers}), dtype=np.int64)
        torch.manual_seed(seed)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.net_ = self.network(X.info).to(device)
        convert = converter(p.cutoff, device)
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=p.lr)
        target = torch.tensor((y - self.target_mean_) / self.target_std_, dtype=torch.float32, device=device)
        rng = np.random.default_rng(seed)
        self.history_ = []
        for epoch in tqdm(range(p.epochs), desc="train schnet", unit="epoch", disable=not progress):
            self.net_.train()
            order = rng.permutation(len(frames))
            losses = []
            for lo in range(0, len(order), p.batch_size):
                batch = order[lo : lo + p.batch_size]
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(self.net_(convert([frames[i] for i in batch]))["y"], target[batch])
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()) * len(batch))
            record = {
                "epoch": epoch + 1,
                "train_rmse_mev": float(np.sqrt(sum(losses) / len(frames)) * self.target_std_ * 1000),
            }
            if tested is not None:
                record["test_rmse_mev"] = regression_metrics(eval_set[1], self._predict(tested))["rmse_mev"]
            self.history_.append(record)
        return self

    def predict(self, X: Rows) -> np.ndarray:
        return self._predict(X.atoms())

    def _predict(self, frames: Sequence[Atoms]) -> np.ndarray:
        import torch

        device = next(self.net_.parameters()).device.type
        convert = converter(self.params.cutoff, device)
        out = []
        self.net_.eval()
        with torch.no_grad():
            for lo in range(0, len(frames), self.params.batch_size):
                out.append(self.net_(convert(list(frames[lo : lo + self.params.batch_size])))["y"].cpu().numpy())
        z = np.concatenate(out) if out else np.empty(0)
        return z * float(self.target_std_) + float(self.target_mean_)
