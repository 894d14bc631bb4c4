"""What every model trains on: snapshots of one dataset in one or more collections, their energies per
atom, a split, and (for feature models) stored descriptor values; and what every model leaves:
a model directory with metrics (meV/atom) and a parity plot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from phstore.provenance import package_versions
from phstore.store import DONE, FRAMES, FeatureStore
from phstore.training.metrics import regression_metrics
from phstore.training.modeldir import ModelDir, save_model_dir
from phstore.training.params import Feature
from phstore.training.split import Split

TARGET = "energy_per_atom"
PARITY = "parity.png"


def training_rows(
    collections: Sequence[str], labels: Sequence[np.ndarray], dataset: str | None
) -> tuple[str, list[np.ndarray]]:
    """The dataset trained on and, per collection, the snapshot indices whose energies come from
    it (``labels``: each collection's per-snapshot dataset names).

    Energies of different datasets may come from different codes and functionals, so
    collections holding several datasets need ``dataset`` to say which to train on.
    """
    names = sorted({name for lab in labels for name in lab.tolist()})
    where = "+".join(collections)
    if dataset is None:
        if len(names) > 1:
            raise ValueError(
                f"{where} holds energies of {len(names)} datasets, which may not be comparable: "
                f"{names}; choose one with dataset=... (--dataset)"
            )
        dataset = names[0]
    rows = [np.flatnonzero(lab == dataset) for lab in labels]
    for coll, r in zip(collections, rows):
        if not len(r):
            raise ValueError(
                f"{coll} has no snapshots of dataset {dataset!r}; leave it out or choose another dataset of {names}"
            )
    if sum(map(len, rows)) < 2:
        raise ValueError(f"{where} has fewer than 2 snapshots of dataset {dataset!r}; datasets: {names}")
    return dataset, rows


def collection_list(collections: str | Sequence[str]) -> list[str]:
    """One collection name or several, as a list."""
    return [collections] if isinstance(collections, str) else list(collections)


def descriptor_group(store: FeatureStore, collection: str, descriptor: str, keys: Sequence[str] = ()) -> str:
    """The store group of ``descriptor`` in ``collection``: its one variant, or the one whose
    provenance key starts with one of ``keys`` (keys of other descriptors are ignored)."""
    variants = {g: p for g, p in store.descriptor_groups(collection).items() if p["descriptor"] == descriptor}
    chosen = [g for g, p in variants.items() if any(p["key"].startswith(k) for k in keys)] or list(variants)
    if len(chosen) != 1:
        hint = (
            f"run `phstore featurize {descriptor}` first"
            if not chosen
            else f"choose one with --descriptor-key: {[variants[g]['key'] for g in chosen]}"
        )
        raise ValueError(f"{collection} has {len(chosen) or 'no'} {descriptor} variants to choose from; {hint}")
    return chosen[0]


def feature_sources(
    store: FeatureStore, collections: Sequence[str], features: Sequence[Feature], keys: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """``(group, variable)`` of each feature, the same group (parameters and versions) in every
    collection, or a ValueError that says which collections differ."""
    found = {c: [(descriptor_group(store, c, d, keys), v) for d, v in features] for c in collections}
    first = found[collections[0]]
    for coll, sources in found.items():
        if sources != first:
            raise ValueError(
                f"{collections[0]} and {coll} hold different descriptor variants ({[g for g, _ in first]} vs "
                f"{[g for g, _ in sources]}); featurize every collection with the same parameters or choose one "
                "with --descriptor-key"
            )
    return first


def feature_scales(std: np.ndarray, inputs: dict[str, Any]) -> np.ndarray:
    """Divisors of the training split's centred features (``std``: each column's standard
    deviation), as each stored variable asks (``inputs``: :func:`feature_config`): its columns'
    own deviations (1 where constant) for ``"zscore"``, their root mean square for all of them
    for ``"block"``."""
    out = np.where(std > 1e-12, std, 1.0)
    start = 0
    for shape, scaling in zip(inputs["feature_shapes"], inputs["feature_scalings"]):
        width = int(np.prod(shape))
        if scaling == "block":
            out[start : start + width] = np.sqrt(np.mean(std[start : start + width] ** 2)) or 1.0
        start += width
    return out


#: Snapshots of several collections: ``(collection, snapshot indices)`` in order.
Parts = Sequence[tuple[str, np.ndarray]]


#: Store chunks read at a time by :func:`read_features`: bounds its temporary copy.
READ_CHUNKS = 8


def read_features(
    store: FeatureStore, parts: Parts, sources: Sequence[tuple[str, str]], dtype: type = np.float64
) -> np.ndarray:
    """The features of every part's rows, each source flattened per snapshot and concatenated
    (``dtype``: float64 for the Ridge fit, float32 for the networks); rows follow the order of
    ``parts``. Reads Zarr directly into one array allocated once, ``READ_CHUNKS`` store chunks
    at a time, so besides the result only one block is in memory."""
    total = sum(len(rows) for _, rows in parts)
    out: np.ndarray | None = None
    start, step = 0, store.chunk_size * READ_CHUNKS
    for coll, rows in parts:
        blocks = np.asarray(rows) // step
        for block in np.unique(blocks):
            pos = np.flatnonzero(blocks == block)
            picked = rows[pos]
            region = slice(int(picked.min()), int(picked.max()) + 1)
            whole = len(pos) == region.stop - region.start and bool((np.diff(picked) > 0).all())  # no copy to pick rows
            xs = [
                store.read_rows(coll, g, region, [v])[v][slice(None) if whole else picked - region.start].reshape(
                    len(pos), -1
                )
                for g, v in sources
            ]
            if out is None:
                out = np.empty((total, sum(x.shape[1] for x in xs)), dtype=dtype)
            target = slice(start + pos[0], start + pos[-1] + 1) if pos[-1] - pos[0] + 1 == len(pos) else start + pos
            col = 0
            for x in xs:
                out[target, col : col + x.shape[1]] = x
                col += x.shape[1]
        start += len(rows)
    if out is None:
        raise ValueError("no snapshots to read features of")
    return out


def feature_config(store: FeatureStore, collection: str, sources: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What a feature model records of its inputs: groups, provenance keys and parameters, shapes
    and how each is scaled (the stored variable's ``scaling``; z-scores in stores made before)."""
    provs = store.descriptor_groups(collection)
    arrays = [store.descriptor(collection, g)[v] for g, v in sources]
    return {
        "descriptor_groups": [g for g, _ in sources],
        "descriptor_keys": [provs[g]["key"] for g, _ in sources],
        "descriptor_params": [provs[g]["params"] for g, _ in sources],
        "feature_shapes": [list(a.shape[1:]) for a in arrays],
        "feature_scalings": [a.attrs.get("scaling", "zscore") for a in arrays],
    }


@dataclass
class TrainingData:
    """The snapshots a model trains and is tested on, from one or more collections.

    ``parts`` are ``(collection, snapshot indices)``; positions ``0 … n-1`` run through the
    parts in order. ``train`` and ``test`` are such positions; ``target`` is the energy per
    atom of each position, eV/atom.
    """

    store: FeatureStore
    dataset: str
    parts: list[tuple[str, np.ndarray]]
    target: np.ndarray
    train: np.ndarray
    test: np.ndarray

    @property
    def collections(self) -> list[str]:
        return [c for c, _ in self.parts]

    @property
    def name(self) -> str:
        """The collections as one label, e.g. ``C64+C216``."""
        return "+".join(self.collections)

    def __len__(self) -> int:
        return len(self.target)

    @classmethod
    def select(
        cls,
        store: FeatureStore,
        collections: str | Sequence[str],
        dataset: str | None,
        split: Split,
        done_in: tuple[str, ...] = (),
    ) -> "TrainingData":
        """Rows of one dataset (and finished in every descriptor group of ``done_in``) of one
        collection or several, split. A trajectory split keeps each (collection, trajectory)
        whole."""
        collections = collection_list(collections)
        tables = [
            store.read_rows(c, FRAMES, slice(0, store.n_snapshots(c)), ["dataset", TARGET, "trajectory"])
            for c in collections
        ]
        dataset, rows = training_rows(collections, [t["dataset"] for t in tables], dataset)
        parts, target, groups = [], [], []
        for coll, r, frames in zip(collections, rows, tables):
            for group in done_in:
                r = r[store.status(coll, group)[r] == DONE]
            parts.append((coll, r))
            target.append(frames[TARGET][r].astype(float))
            groups += [f"{coll}/{t}" for t in frames["trajectory"][r].tolist()]
        if len(groups) < 2:
            raise ValueError(
                f"fewer than 2 snapshots of {'+'.join(collections)} have finished features in {list(done_in)}"
            )
        train, test = split.indices(len(groups), groups)
        return cls(store, dataset, parts, np.concatenate(target), train, test)

    def split_rows(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """``positions`` as snapshot indices per collection."""
        bounds = np.cumsum([0, *(len(r) for _, r in self.parts)])
        return {
            c: r[positions[(positions >= lo) & (positions < hi)] - lo]
            for (c, r), lo, hi in zip(self.parts, bounds, bounds[1:])
        }

    def finish(
        self,
        out: str | Path,
        kind: str,
        config: dict[str, Any],
        state: dict[str, Any],
        predicted: np.ndarray,
        packages: tuple[str, ...],
        extra: dict[str, Any] | None = None,
    ) -> ModelDir:
        """Metrics (meV/atom), a parity plot and the model directory for predictions of every position."""
        from phstore.plots import plot_parity

        metrics = {
            part: regression_metrics(self.target[idx], predicted[idx])
            for part, idx in (("train", self.train), ("test", self.test))
        } | (extra or {})
        provenance = {
            "store": str(self.store.path.resolve()),
            "collections": self.collections,
            "dataset": self.dataset,
            "versions": package_versions(packages),
        }
        model = save_model_dir(
            out, kind, config, state, self.split_rows(self.train), self.split_rows(self.test), metrics, provenance
        )
        plot_parity(
            self.target,
            predicted,
            {"train": self.train, "test": self.test},
            model.path / PARITY,
            f"{kind} on {self.name} ({self.dataset})",
        )
        return model


def model_sources(model: ModelDir, store: FeatureStore, collection: str) -> list[tuple[str, str]]:
    """The ``(group, variable)`` a feature model reads, as found in ``collection`` (same
    parameters and versions as in training), or a ValueError that says how to make them."""
    sources = [(g, v) for g, (_, v) in zip(model.config["descriptor_groups"], model.config["features"])]
    for group, _ in sources:
        if group not in store.descriptor_groups(collection):
            raise ValueError(
                f"{collection} has no {group} features (the {model.kind} model was trained on them); run "
                f"`phstore featurize {group.split('-', 1)[0]}` with the parameters `phstore info` "
                f"shows for {'+'.join(model.provenance['collections'])}"
            )
    return sources
