"""Apply a trained model to a collection and store its predictions next to the features.

Predictions are a store group like a descriptor's: ``prediction-<key>`` whose key hashes the
model's key, so ``open_store(...).sel(...)`` returns them lazily as
``prediction_energy_per_atom`` (eV/atom) and predictions of different models never mix.
Rows the model cannot predict (features missing or failed) are recorded as failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from phstore.metrics import regression_metrics
from phstore.modeldir import ModelDir, load_model_dir
from phstore.plots import plot_parity
from phstore.provenance import provenance
from phstore.store import DONE, FAILED, FRAMES, TARGET, FeatureStore, VariableSpec, label_mask
from phstore.training.train import load_model, model_rows


@dataclass(frozen=True)
class PredictionParams:
    """What identifies stored predictions: the model's key and kind."""

    model_key: str
    kind: str


@dataclass
class PredictionReport:
    """Where predictions went, how many, and their errors (meV/atom) on the model's dataset."""

    group: str
    predicted: int
    failed: int
    metrics: dict[str, Any] | None
    plot: Path | None


def _provenance(model: ModelDir) -> dict[str, Any]:
    return provenance("prediction", PredictionParams(model.key, model.kind), ())


def prediction_group(model: ModelDir) -> str:
    """The store group that holds ``model``'s predictions."""
    return f"prediction-{_provenance(model)['key']}"


def predict(
    model_path: str | Path, store_path: str | Path, collection: str, progress: bool = False
) -> PredictionReport:
    """Predict the energy per atom of every snapshot of ``collection`` with the model at
    ``model_path`` and write it to the store.

    Metrics are computed on the snapshots of the dataset the model was trained on (energies of
    other datasets are not comparable; ``None`` when the collection holds none of them), and
    drawn as a parity plot ``parity-<collection>.png`` in the model directory (the seed
    paper's Fig. 2c/d for a 216-atom model predicting 512 atoms). ``progress`` shows a bar of
    a network's batches.
    """
    model = load_model_dir(model_path)
    store = FeatureStore(store_path, mode="r+")
    n = store.n_snapshots(collection)
    everything = model_rows(model, store, collection, np.arange(n))
    ok = np.ones(n, dtype=bool)
    for group, _ in everything.sources:
        ok &= store.status(collection, group) == DONE
    rows = np.flatnonzero(ok)
    values = np.full(n, np.nan)
    if len(rows):
        values[rows] = load_model(model).predict(everything.take(rows), progress)
    prov = _provenance(model)
    group = prediction_group(model)
    with store.writer(f"predict {group}"):
        store.ensure_descriptor(collection, group, prov, {TARGET: VariableSpec((), (), "float64", np.nan)})
        error = np.where(ok, "", f"no finished {'/'.join(model.config.get('descriptor_groups', []))} features")
        store.commit_rows(collection, group, slice(0, n), {TARGET: values}, np.where(ok, DONE, FAILED), error)
    pair = comparable(store, model, collection)
    if pair is None:
        return PredictionReport(group, int(ok.sum()), int((~ok).sum()), None, None)
    target, predicted = pair
    plot = plot_parity(
        target,
        predicted,
        {collection: np.arange(len(target))},
        model.path / f"parity-{collection}.png",
        f"{model.kind} trained on {'+'.join(model.provenance['collections'])}, predicting {collection}",
    )
    return PredictionReport(group, int(ok.sum()), int((~ok).sum()), regression_metrics(target, predicted), plot)


def comparable(store: FeatureStore, model: ModelDir, collection: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The energies per atom (eV/atom) and ``model``'s stored predictions of the snapshots of
    ``collection`` it predicted whose energies come from its training dataset (other datasets'
    are not comparable); None when there are none (or no predictions)."""
    group = prediction_group(model)
    if group not in store.descriptor_groups(collection):
        return None
    n = store.n_snapshots(collection)
    frames = store.read_rows(collection, FRAMES, slice(0, n), ["dataset", TARGET])
    predicted = store.read_rows(collection, group, slice(0, n), [TARGET])[TARGET]
    same = (
        (store.status(collection, group) == DONE)
        & label_mask(frames["dataset"], model.provenance["dataset"])
        & np.isfinite(frames[TARGET])
    )
    return (frames[TARGET][same], predicted[same]) if same.any() else None


def transfer_metrics(store: FeatureStore, model: ModelDir) -> dict[str, dict[str, Any]]:
    """Errors (meV/atom; :func:`~phstore.metrics.regression_metrics`) of ``model``'s stored
    predictions of each collection it was not trained on (e.g. 512-atom frames for a 216-atom
    model), on the snapshots of its dataset."""
    out = {}
    for collection in store.collections:
        pair = None if collection in model.provenance["collections"] else comparable(store, model, collection)
        if pair is not None:
            out[collection] = regression_metrics(*pair)
    return out
