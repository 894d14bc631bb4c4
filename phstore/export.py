"""Snapshots of the store written back out as files other codes read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import ase.io
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from phstore.features import Rows
from phstore.store import FRAMES, KEYS, FeatureStore

#: Frame labels written to each snapshot's ``atoms.info`` besides the keys.
LABELS = ("process", "temperature", "source", "source_index")


def write_extxyz(
    store: FeatureStore, collection: str, rows: np.ndarray, path: str | Path, variables: Sequence[str] = ()
) -> int:
    """Write snapshots ``rows`` of ``collection`` to an extended-XYZ file: positions and cell (Å),
    the energy (eV), forces (eV/Å) and stress (eV/Å³) where the frame has them, the keys and labels
    in its comment line (as ingest reads them back), and ``variables`` of
    :meth:`~phstore.store.FeatureStore.dataset` (e.g. ``soap_mean``): per-atom ones as atom arrays,
    the others in the comment line (flattened). Returns how many frames were written."""
    rows = np.asarray(rows)
    n = store.n_snapshots(collection)
    table = store.read_rows(collection, FRAMES, slice(0, n), [*KEYS, *LABELS, "energy", "labels"])
    extra = _variables(store, collection, rows, variables)
    labels_of = store.frames(collection, rows)[["forces", "stress"]].load()  # the chunks of rows
    frames = Rows(store, [(collection, rows)]).atoms()
    for i, (a, row) in enumerate(zip(frames, rows)):
        labels = json.loads(table["labels"][row] or "{}") | {k: _plain(table[k][row]) for k in (*KEYS, *LABELS)}
        a.info.update({k: v for k, v in labels.items() if v == v and v != ""})  # not NaN or empty: absent
        results = {
            "energy": float(table["energy"][row]),
            "forces": labels_of["forces"].values[i],
            "stress": labels_of["stress"].values[i],
        }
        a.calc = SinglePointCalculator(a, **{k: v for k, v in results.items() if np.isfinite(v).all()})
        for name, (per_atom, values) in extra.items():
            if per_atom:
                a.arrays[name] = values[i]
            else:
                a.info[name] = values[i].ravel() if values[i].ndim else values[i].item()
    ase.io.write(str(path), frames, format="extxyz")
    return len(frames)


def _variables(
    store: FeatureStore, collection: str, rows: np.ndarray, names: Sequence[str]
) -> dict[str, tuple[bool, np.ndarray]]:
    """``{name: (per atom, values of rows)}`` of dataset variables, as extxyz writes them."""
    if not names:
        return {}
    ds = store.dataset(collection, rows)
    unknown = [v for v in names if v not in ds.data_vars]
    if unknown:
        raise ValueError(f"{collection} has no variable {unknown[0]!r}; variables: {', '.join(sorted(ds.data_vars))}")
    picked = ds[list(names)].load()
    return {v: (picked[v].dims[1:2] == ("atom",), np.asarray(picked[v].values, dtype=float)) for v in names}


def _plain(value: object) -> object:
    """A stored value (numpy scalar, or string object) as the Python value extxyz writes."""
    return value.item() if isinstance(value, np.generic) else value
