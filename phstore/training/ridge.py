"""Ridge regression of the energy per atom on stored descriptor values (seed paper §2.5).

Defaults: the normalised PH histogram (128 × 128, flattened), alpha 200, an intercept. The
features are centred and scaled with statistics of the training split only, as their
stored variables ask (:func:`~phstore.training.data.feature_scales`: the histogram's bins are
z-scored, bins constant in training keep scale 1); the scaler is saved with the model.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from phstore.store import FeatureStore
from phstore.training.data import (
    TrainingData,
    collection_list,
    feature_config,
    feature_scales,
    feature_sources,
    model_sources,
    read_features,
)
from phstore.training.modeldir import ModelDir
from phstore.training.params import RidgeConfig
from phstore.training.split import Split

KIND = "ridge"


def train_ridge(
    store_path: str | Path,
    collections: str | Sequence[str],
    out: str | Path,
    config: RidgeConfig = RidgeConfig(),
    split: Split = Split(),
    dataset: str | None = None,
    descriptor_keys: tuple[str, ...] = (),
) -> ModelDir:
    """Fit scikit-learn's Ridge on the snapshots of one or more collections (one dataset) whose
    features are finished, and write a model directory with the coefficients, intercept and
    scaler. ``metrics["seconds"]`` records the time spent reading the store and fitting."""
    import torch
    from sklearn.linear_model import Ridge

    start = time.perf_counter()
    store = FeatureStore(store_path, mode="r")
    collections = collection_list(collections)
    sources = feature_sources(store, collections, config.features, descriptor_keys)
    data = TrainingData.select(store, collections, dataset, split, done_in=tuple(g for g, _ in sources))
    X = read_features(store, data.parts, sources)
    read = time.perf_counter()
    inputs = feature_config(store, collections[0], sources)
    mean = X[data.train].mean(axis=0)
    scale = feature_scales(X[data.train].std(axis=0), inputs)
    model = Ridge(alpha=config.alpha, fit_intercept=True).fit((X[data.train] - mean) / scale, data.target[data.train])
    seconds = {"read": read - start, "fit": time.perf_counter() - read}
    predicted = model.predict((X - mean) / scale)
    state = {
        "coef": torch.from_numpy(np.asarray(model.coef_, dtype=np.float64)),
        "intercept": torch.tensor(float(model.intercept_), dtype=torch.float64),
        "mean": torch.from_numpy(mean),
        "scale": torch.from_numpy(scale),
    }
    cfg = {
        "ridge": dataclasses.asdict(config),
        "features": [list(f) for f in config.features],
        "split": dataclasses.asdict(split),
        **inputs,
    }
    return data.finish(out, KIND, cfg, state, predicted, ("scikit-learn",), {"seconds": seconds})


def predict_ridge(model: ModelDir, store: FeatureStore, collection: str, rows: np.ndarray) -> np.ndarray:
    """Energies per atom (eV/atom) of ``rows`` of ``collection`` from the model's stored features."""
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    X = read_features(store, [(collection, rows)], model_sources(model, store, collection))
    return (X - state["mean"]) / state["scale"] @ state["coef"] + float(state["intercept"])
