"""Stored descriptor values as model inputs: which group holds a descriptor (one variant, or
the one a key chooses), the same variant in every collection, reading rows of several
collections into one array a block of store chunks at a time, and how each variable is scaled.

Training, prediction and the analyses (maps) read features through this module only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from phstore.params import Feature
from phstore.store import FRAMES, FeatureStore


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
    start = 0
    for coll, rows in parts:
        blocks = store.chunk_of(np.asarray(rows)) // READ_CHUNKS
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


@dataclass(frozen=True)
class Rows:
    """What a model reads: snapshots of a store (``parts``: ``(collection, snapshot indices)``,
    positions ``0 … n-1`` running through them in order) and the stored features it takes of
    them (``sources``: ``(group, variable)``; ``info``: :func:`feature_config`). A model without
    features reads the snapshots' positions (:meth:`atoms`)."""

    store: FeatureStore
    parts: Parts
    sources: tuple[tuple[str, str], ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(rows) for _, rows in self.parts)

    def take(self, positions: np.ndarray) -> "Rows":
        """The rows at sorted ``positions``."""
        bounds = np.cumsum([0, *(len(r) for _, r in self.parts)])
        positions = np.asarray(positions)
        parts = [
            (c, r[positions[(positions >= lo) & (positions < hi)] - lo])
            for (c, r), lo, hi in zip(self.parts, bounds, bounds[1:])
        ]
        return Rows(self.store, parts, self.sources, self.info)

    def features(self, dtype: type = np.float64) -> np.ndarray:
        """Every row's features, one row per snapshot (:func:`read_features`)."""
        return read_features(self.store, self.parts, self.sources, dtype)

    def atoms(self, forces: bool = False) -> list[Atoms]:
        """Every row's snapshot as periodic ``ase.Atoms`` (positions in Å), in order; with
        ``forces``, its stored forces (eV/Å, NaN where it has none) in ``atoms.arrays["forces"]``."""
        out = []
        for coll, rows in self.parts:
            for lo in range(0, len(rows), 1024):  # bounded reads
                block = rows[lo : lo + 1024]
                region = slice(int(block.min()), int(block.max()) + 1)
                every = self.store.atoms(coll, region)
                if forces:
                    for atoms, f in zip(every, self.store.read_rows(coll, FRAMES, region, ["forces"])["forces"]):
                        atoms.arrays["forces"] = f
                out += [every[i - block.min()] for i in block]
        return out
