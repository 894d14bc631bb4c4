"""SchNet embeddings: the last interaction block of a trained SchNet, per atom and atom-mean.

Seed paper §2.4: the descriptor is the output of the last interaction block of the trained
model (100 values per atom); its mean over the atoms describes the snapshot. The model comes
from a model directory written by ``phstore train schnet``; the provenance key holds
the model's key (a hash of its weights and config), so embeddings of different checkpoints
never share a variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from phstore.descriptors.base import Descriptor, FrameResult
from phstore.store import VariableSpec
from phstore.training.modeldir import ModelDirError, load_model_dir


@dataclass(frozen=True)
class SchNetParams:
    """What identifies the embedding: the model's key and its architecture (for reading)."""

    model_key: str
    n_atom_basis: int
    n_interactions: int
    cutoff: float
    species: tuple[int, ...]


@lru_cache(maxsize=2)
def _load(path: str, key: str):
    """The trained model and its input converter, loaded once per process and checked against ``key``."""
    from phstore.training.schnet import KIND, architecture_of, build_schnet, converter

    model_dir = load_model_dir(path, KIND)
    if model_dir.key != key:
        raise ModelDirError(
            f"the model at {path} has key {model_dir.key}, not {key}: it was re-trained or replaced; "
            "featurize again with --model pointing at the model you mean"
        )
    arch = architecture_of(model_dir)
    model = build_schnet(arch)
    model.load_state_dict(model_dir.state_dict())
    model.eval()
    return model, converter(arch)


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
        goes alone). The pass's pair tensors (atoms × ~60 neighbours within 5 Å at 2.4 g/cm³ ×
        ``n_atom_basis`` float32: ~13 MB for 512 atoms) then stay under the 32 MiB mmap
        threshold of phstore's workers, so their memory is reused instead of faulted in again
        per pass, and a worker's peak stays low (512 atoms: 0.8 GiB; 8 frames of 512: 1.7-2.0).
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
        from phstore.training.schnet import KIND

        model_dir = load_model_dir(path, KIND)
        arch = model_dir.config["architecture"]
        params = SchNetParams(
            model_dir.key,
            arch["n_atom_basis"],
            arch["n_interactions"],
            arch["cutoff"],
            tuple(model_dir.config["species"]),
        )
        return cls(params, str(model_dir.path.resolve()), batch_atoms)

    def variables(self, natoms: int) -> dict[str, VariableSpec]:
        f = self.params.n_atom_basis
        return {
            "per_atom": VariableSpec(("atom", "feature"), (natoms, f), "float32", np.nan, dense=True),
            "mean": VariableSpec(("feature",), (f,), "float32", np.nan),
        }

    def _check(self, atoms: Atoms) -> str | None:
        unseen = sorted(set(int(z) for z in atoms.numbers) - set(self.params.species))
        if unseen:
            return f"atomic numbers {unseen} were not in the SchNet training data (species {list(self.params.species)})"
        return None

    def _embed(self, frames: Sequence[Atoms]) -> list[np.ndarray]:
        import torch

        from phstore.training.schnet import embed

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
            reason = self._check(atoms)
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
