"""phstore: a Dask-distributed feature store of persistent-homology descriptors for amorphous materials."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["FeatureStore", "calculator", "open_store", "__version__"]


def __getattr__(name: str) -> Any:
    # The store (xarray, zarr, dask: ~2 s to import) is imported on first use, so that
    # `phstore --help` and the light modules (parameters, commands) start fast.
    if name in ("FeatureStore", "open_store"):
        from phstore import store

        return getattr(store, name)
    if name == "calculator":  # an ASE calculator of a trained SchNet model directory
        from phstore.training.schnet import calculator

        return calculator
    raise AttributeError(f"module 'phstore' has no attribute {name!r}")
