"""What every model trains on: snapshots of one dataset in one or more collections, their
energies per atom, and a split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from phstore.store import FAILED, FRAMES, PENDING, TARGET, FeatureStore, label_mask, mixed_datasets
from phstore.training.split import GROUP_KEYS, Split

#: The fewest snapshots a model trains and is tested on.
MIN_SNAPSHOTS = 4
#: The widest spread of energies per atom (eV/atom) one dataset may have: melt-quench carbon
#: spans a few eV/atom; energies of different codes or references differ by tens to hundreds.
MAX_SPREAD = 10.0


def training_rows(
    collections: Sequence[str], labels: Sequence[np.ndarray], dataset: str | None, labelled: Sequence[np.ndarray]
) -> tuple[str, list[np.ndarray]]:
    """The dataset trained on and, per collection, the snapshot indices whose energies come from
    it (``labels``: each collection's per-snapshot dataset names; ``labelled``: whether each
    snapshot has an energy).

    Energies of different datasets may come from different codes and functionals, so
    collections holding several datasets of labelled snapshots need ``dataset`` to say which to
    train on: a name, or a shell pattern (``md/*``) that declares the datasets it matches
    comparable (files of one code and functional).
    """
    names = sorted({name for lab, ok in zip(labels, labelled) for name in lab[ok].tolist()})
    where = "+".join(collections)
    if not names:
        raise ValueError(
            f"{where} holds no snapshot with an energy (all are unlabelled, e.g. MD without DFT): "
            "models need energies; ingest labelled frames (extxyz, OUTCAR, vasprun.xml)"
        )
    if dataset is None:
        if len(names) > 1:
            raise mixed_datasets(where, names, "choose")
        dataset = names[0]
    rows = [np.flatnonzero(label_mask(lab, dataset)) for lab in labels]
    for coll, r in zip(collections, rows):
        if not len(r):
            raise ValueError(
                f"{coll} has no snapshots of dataset {dataset!r}; leave it out or choose another dataset of {names}"
            )
    return dataset, rows


def collection_list(collections: str | Sequence[str]) -> list[str]:
    """One collection name or several, as a list."""
    return [collections] if isinstance(collections, str) else list(collections)


def check_spread(store: FeatureStore, target: np.ndarray, parts: list[tuple[str, np.ndarray]], dataset: str) -> None:
    """Raise ValueError, naming the lowest and highest snapshots and their sources, when the
    energies per atom (eV/atom) of one dataset spread wider than :data:`MAX_SPREAD`: energies of
    several codes or references under one name."""
    if not len(target) or float(target.max() - target.min()) <= MAX_SPREAD:
        return
    where = [(c, int(r)) for c, rows in parts for r in rows]

    def named(position: int) -> str:
        coll, row = where[position]
        f = store.read_rows(coll, FRAMES, slice(row, row + 1), ["source", "source_index"])
        return f"{coll} snapshot {row}: {f['source'][0]} frame {int(f['source_index'][0])}"

    low, high = int(target.argmin()), int(target.argmax())
    raise ValueError(
        f"the energies per atom of dataset {dataset!r} span {target[low]:.2f} ({named(low)}) … {target[high]:.2f} "
        f"eV/atom ({named(high)}), wider than {MAX_SPREAD:g} eV/atom: they come from more than one code or "
        "reference; choose the dataset of one (--dataset NAME, or a pattern that matches its files only)"
    )


@dataclass
class TrainingData:
    """The snapshots a model trains and is tested on, from one or more collections.

    ``parts`` are ``(collection, snapshot indices)``; positions ``0 … n-1`` run through the
    parts in order. ``train`` and ``test`` are such positions; ``target`` is the energy per
    atom of each position, eV/atom. ``counts`` says what was left out: ``selected`` (snapshots
    of the dataset), ``unlabelled`` (no energy), ``failed`` and ``pending`` (their features),
    ``used``.
    """

    store: FeatureStore
    dataset: str
    parts: list[tuple[str, np.ndarray]]
    target: np.ndarray
    train: np.ndarray
    test: np.ndarray
    counts: dict[str, int]

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
        """Labelled rows of one dataset (and finished in every descriptor group of ``done_in``) of
        one collection or several, split. A trajectory (config_type) split keeps each
        (collection, trajectory (config_type)) whole."""
        collections = collection_list(collections)
        key = GROUP_KEYS[split.kind]
        tables = [
            store.read_rows(c, FRAMES, slice(0, store.n_snapshots(c)), ["dataset", TARGET, key]) for c in collections
        ]
        labelled = [np.isfinite(t[TARGET].astype(float)) for t in tables]
        dataset, rows = training_rows(collections, [t["dataset"] for t in tables], dataset, labelled)
        parts, target, groups = [], [], []
        counts = {"selected": sum(map(len, rows)), "unlabelled": 0, "failed": 0, "pending": 0}
        for coll, r, frames, ok in zip(collections, rows, tables, labelled):
            unlabelled = ~ok[r]
            failed, pending = np.zeros(len(r), dtype=bool), np.zeros(len(r), dtype=bool)
            for group in done_in:
                status = store.status(coll, group)[r]
                failed |= status == FAILED
                pending |= status == PENDING
            failed &= ~unlabelled  # a row counts once: unlabelled, else failed, else pending
            pending &= ~failed & ~unlabelled
            counts["unlabelled"] += int(unlabelled.sum())
            counts["failed"] += int(failed.sum())
            counts["pending"] += int(pending.sum())
            r = r[~unlabelled & ~failed & ~pending]
            parts.append((coll, r))
            target.append(frames[TARGET][r].astype(float))
            groups += [f"{coll}/{t}" for t in frames[key][r].tolist()]
        counts["used"] = len(groups)
        if len(groups) < MIN_SNAPSHOTS:
            raise ValueError(
                f"only {len(groups)} of the {counts['selected']} snapshots of dataset {dataset!r} in "
                f"{'+'.join(collections)} can be used ({counts['unlabelled']} without energy, {counts['failed']} "
                f"failed and {counts['pending']} pending in {list(done_in)}); a model needs at least "
                f"{MIN_SNAPSHOTS}: finish the features (`phstore featurize ...`, --retry-failed) or add "
                "collections of the same dataset"
            )
        target = np.concatenate(target)
        check_spread(store, target, parts, dataset)
        train, test = split.indices(len(groups), groups)
        return cls(store, dataset, parts, target, train, test, counts)
