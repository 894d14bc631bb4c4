"""SchNet embeddings: the last interaction block of a trained SchNet, per atom and atom-mean.

Seed paper §2.4: the descriptor is the output of the last interaction block of the trained
model (100 values per atom); its mean over the atoms describes the snapshot. The model comes
from a model directory written by ``phstore train schnet``; the provenance key holds
the model's key (a hash of its weights and config), so embeddings of different checkpoints
never share a variable. The network itself (:func:`build_schnet`) is defined here, where it is
applied; :mod:`phstore.training.schnet` trains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from phstore.compat import import_schnetpack
from phstore.descriptors.base import Descriptor, FrameResult
from phstore.modeldir import ModelDirError, load_model_dir, load_module
from phstore.store import VariableSpec


@dataclass(frozen=True)
class SchNetParams:
    """What identifies the embedding: the model's key and its architecture (for reading)."""

    model_key: str
    n_atom_basis: int
    n_interactions: int
    cutoff: float
    species: tuple[int, ...]


KIND = "schnet"  # the model kind whose directories this descriptor reads


def build_schnet(n_atom_basis: int, n_interactions: int, n_rbf: int, cutoff: float):
    """An untrained schnetpack ``NeuralNetworkPotential`` (seed paper §2.4: ``n_rbf`` Gaussians on
    0–``cutoff`` Å, cosine cutoff) whose output ``y`` is the atom-mean of the atom-wise head
    (standardised energy per atom)."""
    spk = import_schnetpack()
    representation = spk.representation.SchNet(
        n_atom_basis=n_atom_basis,
        n_interactions=n_interactions,
        radial_basis=spk.nn.GaussianRBF(n_rbf=n_rbf, cutoff=cutoff),
        cutoff_fn=spk.nn.CosineCutoff(cutoff),
    )
    return spk.model.NeuralNetworkPotential(
        representation=representation,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[spk.atomistic.Atomwise(n_in=n_atom_basis, output_key="y", aggregation_mode="avg")],
    )


def converter(cutoff: float, device: str = "cpu", double: bool = False):
    """schnetpack's ``AtomsConverter`` (matscipy's periodic neighbour list at ``cutoff`` Å,
    float32, or float64 if ``double``)."""
    import torch

    spk = import_schnetpack()
    return spk.interfaces.AtomsConverter(
        neighbor_list=spk.transform.MatScipyNeighborList(cutoff=cutoff),
        device=device,
        dtype=torch.float64 if double else torch.float32,
    )


def embed(model, inputs: dict) -> Any:
    """Per-atom output of the last interaction block (atoms of the batch × n_atom_basis)."""
    for module in model.input_modules:
        inputs = module(inputs)
    return model.representation(inputs)["scalar_representation"]


def architecture(params: dict[str, Any]) -> tuple[int, int, int, float]:
    """``build_schnet``'s arguments from a SchNet model's recorded parameters."""
    return params["n_atom_basis"], params["n_interactions"], params["n_rbf"], params["cutoff"]


@lru_cache(maxsize=2)
def _load(path: str, key: str):
    """The trained model and its input converter, loaded once per process and checked against ``key``."""
    model_dir = load_model_dir(path, KIND)
    if model_dir.key != key:
        raise ModelDirError(
            f"the model at {path} has key {model_dir.key}, not {key}: it was re-trained or replaced; "
            "featurize again with --model pointing at the model you mean"
        )
    model = load_module(build_schnet(*architecture(model_dir.config["params"])), model_dir.state())
    model.eval()
    return model, converter(model_dir.config["params"]["cutoff"])


class SchNet(Descriptor):
    """Embeddings of a trained SchNet: ``per_atom`` (atom × feature) and ``mean`` (feature).

    Parameters
    ----------
    params:
        :class:`SchNetParams`; build them from a model directory with :meth:`from_model`.
    model_path:
        The model directory (read on the workers; not part of the provenance key).
    batch_atoms:
        Atoms per forward pass: consecutive frames are grouped up to this many (a larger frame
        goes alone), so the pass's pair tensors stay under the 32 MiB mmap threshold of
        phstore's workers and a worker's peak stays low (figures in ``benchmarks/README.md``).
    """

    name = "schnet"
    summary = "mean"
    packages = ("schnetpack", "torch")

    def __init__(self, params: SchNetParams, model_path: str, batch_atoms: int = 512) -> None:
        self.params = params
        self.model_path = model_path
        self.batch_atoms = batch_atoms

    @classmethod
    def from_model(cls, path: str | Path, batch_atoms: int = 512) -> "SchNet":
        """The descriptor of the SchNet model directory at ``path``."""
        model_dir = load_model_dir(path, KIND)
        arch = model_dir.config["params"]
        params = SchNetParams(
            model_dir.key,
            arch["n_atom_basis"],
            arch["n_interactions"],
            arch["cutoff"],
            tuple(int(z) for z in model_dir.state()["species"]),
        )
        return cls(params, str(model_dir.path.resolve()), batch_atoms)

    def variables(self, natoms: int) -> dict[str, VariableSpec]:
        f = self.params.n_atom_basis
        return {
            "per_atom": VariableSpec(
                ("atom", "feature"),
                (natoms, f),
                "float32",
                np.nan,
                dense=True,
                long_name="SchNet embedding of each atom",
            ),
            "mean": VariableSpec(
                ("feature",), (f,), "float32", np.nan, long_name="SchNet embedding, mean over the atoms"
            ),
        }

    def species(self) -> tuple[int, ...]:
        return self.params.species  # what the model was trained on

    def _embed(self, frames: Sequence[Atoms]) -> list[np.ndarray]:
        import torch

        model, convert = _load(self.model_path, self.params.model_key)
        with torch.no_grad():
            x = embed(model, convert(list(frames))).cpu().numpy()
        return np.split(x, np.cumsum([len(a) for a in frames])[:-1])

    def compute(self, atoms: Atoms) -> FrameResult:
        return self.compute_batch([atoms])[0]

    def compute_batch(self, frames: Sequence[Atoms]) -> list[FrameResult]:
        """Embed up to ``batch_atoms`` atoms per forward pass; a frame that fails is retried
        alone so only it is recorded as failed."""
        results: list[FrameResult | None] = [None] * len(frames)
        good = []
        for i, atoms in enumerate(frames):
            reason = self.species_error(atoms)
            if reason:
                results[i] = FrameResult.failed(reason)
            else:
                good.append(i)
        for batch in atom_batches([len(frames[i]) for i in good], self.batch_atoms):
            idx = [good[j] for j in batch]
            try:
                embeddings = self._embed([frames[i] for i in idx])
            except ModelDirError:
                raise
            except Exception:
                embeddings = [self._embed_one(frames[i]) for i in idx]
            for i, x in zip(idx, embeddings):
                results[i] = (
                    x
                    if isinstance(x, FrameResult)
                    else FrameResult(
                        values={"per_atom": x.astype(np.float32), "mean": x.mean(axis=0).astype(np.float32)}
                    )
                )
        return results  # type: ignore[return-value]

    def _embed_one(self, atoms: Atoms) -> np.ndarray | FrameResult:
        try:
            return self._embed([atoms])[0]
        except ModelDirError:
            raise
        except Exception as exc:
            return FrameResult.failed(f"SchNet failed: {type(exc).__name__}: {exc}")


def atom_batches(natoms: Sequence[int], max_atoms: int) -> list[list[int]]:
    """Positions of frames with ``natoms`` atoms, consecutive ones grouped while their atoms add
    up to at most ``max_atoms``; a frame larger than that forms a group alone."""
    groups: list[list[int]] = []
    held = max_atoms
    for i, n in enumerate(natoms):
        if held + n > max_atoms:
            groups.append([])
            held = 0
        groups[-1].append(i)
        held += n
    return groups
