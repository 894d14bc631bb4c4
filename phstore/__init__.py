"""phstore: a Dask-distributed feature store of persistent-homology descriptors for amorphous materials."""

from phstore.store import FeatureStore, open_store

__version__ = "0.1.0"
__all__ = ["FeatureStore", "open_store", "__version__"]
