"""Shared fixtures: tiny generated frames, a real LocalCluster, the real-carbon data, a trained
SchNet, and the entries of the descriptor contract suite."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from ase import Atoms

from phstore.descriptors import PH, SOAP, Descriptor, DiagramHistogram, PersistenceImage, SchNet
from tests.helpers import REAL_CARBON, write_trajectory


@pytest.fixture
def tiny_source(tmp_path: Path) -> Path:
    """Two trajectories at two densities in the Zenodo layout (64-atom frames)."""
    root = tmp_path / "data"
    write_trajectory(root / "64atom_amorphous" / "run1.xyz", 6, density=2.0, seed=1)
    write_trajectory(root / "64atom_amorphous" / "run2.xyz", 5, density=3.0, seed=2)
    return root


@pytest.fixture(scope="session")
def client():
    """A real two-worker LocalCluster, shared by the tests of a session."""
    from phstore.cluster import ClusterOptions, connect

    with connect(ClusterOptions(workers=2)) as c:
        yield c


@pytest.fixture(scope="session")
def real_carbon() -> Path:
    if not REAL_CARBON.is_dir():
        pytest.skip(f"real-carbon data not found at {REAL_CARBON}")
    return REAL_CARBON


@pytest.fixture(scope="session")
def schnet_model(tmp_path_factory) -> Path:
    """A small SchNet trained for two epochs on generated 64-atom frames (a real schnetpack model)."""
    from phstore.ingest import ingest
    from phstore.training.params import SchNetConfig
    from phstore.training.train import train

    root = tmp_path_factory.mktemp("schnet")
    source = write_trajectory(root / "data" / "run1.xyz", 12, density=2.4, seed=11)
    ingest(root / "s.zarr", [source], chunk_size=4, progress=False)
    train("schnet", root / "s.zarr", "C64", root / "model", SchNetConfig(n_interactions=2, epochs=2, batch_size=4))
    return root / "model"


@dataclass(frozen=True)
class DescriptorCase:
    """One entry of the descriptor contract suite (``tests/test_contract.py``).

    ``make(request)`` builds the descriptor (it may use fixtures); ``bad_frame(atoms)`` turns a
    good frame into one the descriptor must record as failed, with ``bad_reason`` in the error;
    ``tol`` bounds the relative L1 difference of values that must agree (float rounding);
    ``periodic_tol`` the same for a 2×2×2 supercell (PH: only cell-sized cycles differ);
    ``inputs(descriptor)`` the descriptors a store needs first (vectors of PH diagrams: PH).
    """

    make: Callable[[pytest.FixtureRequest], Descriptor]
    bad_frame: Callable[[Atoms], Atoms]
    bad_reason: str
    tol: float
    periodic_tol: float
    inputs: Callable[[Descriptor], list[Descriptor]] = lambda d: []


def _duplicated_atom(atoms: Atoms) -> Atoms:
    atoms.positions[1] = atoms.positions[0]
    return atoms


def _oxygen(atoms: Atoms) -> Atoms:
    atoms.numbers[0] = 8
    return atoms


#: Every descriptor must pass the contract suite: adding one means adding an entry here.
DESCRIPTOR_CASES = {
    "ph": DescriptorCase(lambda r: PH(time_limit=60), _duplicated_atom, "duplicated atom", 1e-6, 0.04),
    "pimage": DescriptorCase(
        lambda r: PersistenceImage(), _duplicated_atom, "duplicated atom", 1e-6, 0.04, lambda d: [d.source]
    ),
    "phist": DescriptorCase(
        lambda r: DiagramHistogram(), _duplicated_atom, "duplicated atom", 1e-6, 0.04, lambda d: [d.source]
    ),
    "soap": DescriptorCase(lambda r: SOAP(), _oxygen, "are not in the soap species", 1e-5, 1e-5),
    "schnet": DescriptorCase(
        lambda r: SchNet.from_model(r.getfixturevalue("schnet_model")),
        _oxygen,
        "are not in the schnet species",
        1e-5,
        1e-5,
    ),
}


@pytest.fixture(params=sorted(DESCRIPTOR_CASES))
def case(request) -> tuple[Descriptor, DescriptorCase]:
    entry = DESCRIPTOR_CASES[request.param]
    return entry.make(request), entry
