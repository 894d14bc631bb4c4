"""Shared fixtures: tiny generated frames, stores, a real LocalCluster, the real-carbon data."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    from phstore.cluster import connect

    with connect(n_workers=2) as c:
        yield c


@pytest.fixture(scope="session")
def real_carbon() -> Path:
    if not REAL_CARBON.is_dir():
        pytest.skip(f"real-carbon data not found at {REAL_CARBON}")
    return REAL_CARBON
