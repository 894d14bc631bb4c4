"""SOAP power spectrum (dscribe) per atom and its mean over the atoms of a snapshot.

Seed paper §2.3: dscribe SOAP with r_cut 4.1 Å, n_max 8, l_max 9, sigma 0.16 Å (found by
Optuna), one species → 360 features per atom; the atom-mean is the snapshot's descriptor.
Both are stored as float32 (dscribe computes in float64).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from phstore.descriptors.base import Descriptor, FrameResult
from phstore.descriptors.params import SOAPParams
from phstore.store import VariableSpec


@lru_cache(maxsize=4)
def dscribe_soap(params: SOAPParams):
    """The dscribe ``SOAP`` object for ``params`` (periodic, float64), built once per process.

    Built with one BLAS thread: the last bits of dscribe's radial basis (a linear-algebra step)
    depend on the thread count, and moved the output by ~1e-11. With one thread, as in every Dask
    worker, the values are the same bits in any process.
    """
    from dscribe.descriptors import SOAP as DScribeSOAP
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return DScribeSOAP(
            species=list(params.species),
            r_cut=params.r_cut,
            n_max=params.n_max,
            l_max=params.l_max,
            sigma=params.sigma,
            rbf=params.rbf,
            periodic=True,
            dtype="float64",
        )


class SOAP(Descriptor):
    """dscribe SOAP of every atom (``per_atom``: atom × feature) and its atom-mean (``mean``)."""

    name = "soap"
    summary = "mean"
    packages = ("dscribe",)

    def __init__(self, params: SOAPParams = SOAPParams()) -> None:
        self.params = params

    @property
    def n_features(self) -> int:
        return int(dscribe_soap(self.params).get_number_of_features())

    def variables(self, natoms: int) -> dict[str, VariableSpec]:
        f = self.n_features
        return {
            "per_atom": VariableSpec(
                ("atom", "feature"), (natoms, f), "float32", np.nan, dense=True, long_name="SOAP of each atom"
            ),
            "mean": VariableSpec(("feature",), (f,), "float32", np.nan, long_name="SOAP, mean over the atoms"),
        }

    def species(self) -> tuple[int, ...]:
        return tuple(atomic_numbers[s] for s in self.params.species)

    def compute(self, atoms: Atoms) -> FrameResult:
        reason = self.species_error(atoms)
        if reason:
            return FrameResult.failed(f"{reason}; featurize with --species (SOAPParams.species) listing them")
        try:
            per_atom = dscribe_soap(self.params).create(atoms)
        except Exception as exc:  # dscribe rejects the frame: record why, keep going
            return FrameResult.failed(f"dscribe SOAP failed: {type(exc).__name__}: {exc}")
        return FrameResult(
            values={"per_atom": per_atom.astype(np.float32), "mean": per_atom.mean(axis=0).astype(np.float32)}
        )
