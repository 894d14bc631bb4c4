"""What every model trains on: one collection's snapshots of one dataset, their energies per
atom, a split, and (for feature models) stored descriptor values; and what every model leaves:
a model directory with metrics (meV/atom) and a parity plot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from phstore.provenance import package_versions
from phstore.store import DONE, FeatureStore
from phstore.training.metrics import regression_metrics
from phstore.training.modeldir import ModelDir, save_model_dir
from phstore.training.split import Split

TARGET = "energy_per_atom"
PARITY = "parity.png"


def training_rows(store: FeatureStore, collection: str, dataset: str | None) -> np.ndarray:
    """Snapshot indices of ``collection`` whose energies come from one ``dataset``.

    Energies of different datasets may come from different codes and functionals, so a
    collection with several datasets needs ``dataset`` to say which to train on.
    """
    labels = np.asarray(store.frames(collection)["dataset"].values.tolist(), dtype=object)
    names = sorted(set(labels.tolist()))
    if dataset is None:
        if len(names) > 1:
            raise ValueError(
                f"{collection} holds energies of {len(names)} datasets, which may not be comparable: "
                f"{names}; choose one with dataset=... (--dataset)"
            )
        dataset = names[0]
    rows = np.flatnonzero(labels == dataset)
    if len(rows) < 2:
        raise ValueError(f"{collection} has {len(rows)} snapshots of dataset {dataset!r}; datasets: {names}")
    return rows


#: A stored feature: (descriptor name, variable), e.g. ("ph", "histogram") or ("soap", "mean").
Feature = tuple[str, str]


def descriptor_group(store: FeatureStore, collection: str, descriptor: str, keys: Sequence[str] = ()) -> str:
    """The store group of ``descriptor`` in ``collection``: its one variant, or the one whose
    provenance key starts with one of ``keys`` (keys of other descriptors are ignored)."""
    variants = {g: p for g, p in store.descriptor_groups(collection).items() if p["descriptor"] == descriptor}
    chosen = [g for g, p in variants.items() if any(p["key"].startswith(k) for k in keys)] or list(variants)
    if len(chosen) != 1:
        hint = (f"run `phstore featurize --descriptor {descriptor}` first" if not chosen
                else f"choose one with --descriptor-key: {[variants[g]['key'] for g in chosen]}")
        raise ValueError(f"{collection} has {len(chosen) or 'no'} {descriptor} variants to choose from; {hint}")
    return chosen[0]


def feature_sources(store: FeatureStore, collection: str, features: Sequence[Feature],
                    keys: Sequence[str] = ()) -> list[tuple[str, str]]:
    """``(group, variable)`` of each feature in ``collection``."""
    return [(descriptor_group(store, collection, d, keys), v) for d, v in features]


def read_features(store: FeatureStore, collection: str, sources: Sequence[tuple[str, str]], rows: np.ndarray | slice
                  ) -> np.ndarray:
    """The features of ``rows``, each source flattened per snapshot and concatenated (float64)."""
    parts = [store.descriptor(collection, g)[v].isel(snapshot=rows).values for g, v in sources]
    return np.concatenate([x.reshape(len(x), -1).astype(np.float64) for x in parts], axis=1)


def feature_config(store: FeatureStore, collection: str, sources: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What a feature model records of its inputs: groups, provenance keys, shapes."""
    provs = store.descriptor_groups(collection)
    return {
        "descriptor_groups": [g for g, _ in sources],
        "descriptor_keys": [provs[g]["key"] for g, _ in sources],
        "feature_shapes": [list(store.descriptor(collection, g)[v].shape[1:]) for g, v in sources],
    }


@dataclass
class TrainingData:
    """The snapshots a model trains and is tested on.

    ``rows`` are snapshot indices of the collection; ``train`` and ``test`` are positions in
    ``rows``; ``target`` is the energy per atom of each row, eV/atom.
    """

    store: FeatureStore
    collection: str
    dataset: str
    rows: np.ndarray
    target: np.ndarray
    train: np.ndarray
    test: np.ndarray

    @classmethod
    def select(cls, store: FeatureStore, collection: str, dataset: str | None, split: Split,
               done_in: tuple[str, ...] = ()) -> "TrainingData":
        """Rows of one dataset (and finished in every descriptor group of ``done_in``), split."""
        rows = training_rows(store, collection, dataset)
        for group in done_in:
            status = store.descriptor(collection, group)["status"].values
            rows = rows[status[rows] == DONE]
        if len(rows) < 2:
            raise ValueError(f"fewer than 2 snapshots of {collection} have finished features in {list(done_in)}")
        frames = store.frames(collection)
        groups = frames["trajectory"].values[rows].tolist()
        train, test = split.indices(len(rows), groups)
        return cls(store, collection, str(frames["dataset"].values[rows[0]]), rows,
                   frames[TARGET].values[rows].astype(float), train, test)

    def finish(self, out: str | Path, kind: str, config: dict[str, Any], state: dict[str, Any],
               predicted: np.ndarray, packages: tuple[str, ...], extra: dict[str, Any] | None = None) -> ModelDir:
        """Metrics (meV/atom), a parity plot and the model directory for predictions of every row."""
        from phstore.plots import plot_parity

        metrics = {part: regression_metrics(self.target[idx], predicted[idx])
                   for part, idx in (("train", self.train), ("test", self.test))} | (extra or {})
        provenance = {
            "store": str(self.store.path.resolve()),
            "collection": self.collection,
            "dataset": self.dataset,
            "versions": package_versions(packages),
        }
        model = save_model_dir(out, kind, config, state, self.rows[self.train], self.rows[self.test], metrics, provenance)
        plot_parity(self.target, predicted, self.train, self.test, model.path / PARITY,
                    f"{kind} on {self.collection} ({self.dataset})")
        return model


def model_sources(model: ModelDir, store: FeatureStore, collection: str) -> list[tuple[str, str]]:
    """The ``(group, variable)`` a feature model reads, as found in ``collection`` (same
    parameters and versions as in training), or a ValueError that says how to make them."""
    sources = [(g, v) for g, (_, v) in zip(model.config["descriptor_groups"], model.config["features"])]
    for group, _ in sources:
        if group not in store.descriptor_groups(collection):
            raise ValueError(
                f"{collection} has no {group} features (the {model.kind} model was trained on them); run "
                f"`phstore featurize --descriptor {group.split('-', 1)[0]}` with the parameters `phstore info` "
                f"shows for {model.provenance['collection']}"
            )
    return sources
