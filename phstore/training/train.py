"""One way to train any model kind and to load it again.

:func:`train` selects the snapshots (one dataset, finished features, a split), builds the
rows the model reads, fits it, and writes the model directory with metrics (meV/atom) and a
parity plot; :func:`load_model` gives back the fitted model of a directory.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from phstore.features import Rows, feature_config, feature_sources
from phstore.metrics import regression_metrics
from phstore.modeldir import ModelDir, save_model_dir
from phstore.params import from_dict
from phstore.plots import plot_learning_curve, plot_parity
from phstore.provenance import package_versions
from phstore.store import FeatureStore
from phstore.training.checkpoint import CHECKPOINT, Checkpoint, fingerprint
from phstore.training.data import TrainingData, collection_list
from phstore.training.model import Model
from phstore.training.registry import model_kind
from phstore.training.split import Split

PARITY = "parity.png"


def train(
    kind: str,
    store_path: str | Path,
    collections: str | Sequence[str],
    out: str | Path,
    params: Any = None,
    split: Split = Split(),
    dataset: str | None = None,
    descriptor_keys: tuple[str, ...] = (),
    progress: bool = True,
) -> ModelDir:
    """Fit a model of ``kind`` (:data:`~phstore.training.registry.MODELS`; ``params``: its
    parameter dataclass, default the kind's preset) on one or more collections of one
    ``dataset`` and write its model directory to ``out``.

    Feature models train on the snapshots whose features are finished, the same descriptor
    variant in every collection (``descriptor_keys`` chooses among several). ``metrics`` hold
    train and test RMSE/MAE (meV/atom) and R² (and a potential's force RMSE/MAE, meV/Å),
    ``seconds`` of the fit, and the learning curve (``history``) of models that keep one.
    Networks checkpoint into ``out`` as they train: training the same model into the same
    ``out`` again resumes an interrupted fit (:mod:`~phstore.training.checkpoint`), and
    ``metrics`` say so (``resumed_at_epoch``, 1-based; ``seconds`` are then of the last run).
    """
    model: Model = model_kind(kind).build(params)
    store = FeatureStore(store_path, mode="r")
    collections = collection_list(collections)
    sources = feature_sources(store, collections, model.features, descriptor_keys) if model.features else []
    data = TrainingData.select(store, collections, dataset, split, done_in=tuple(g for g, _ in sources))
    inputs = (
        {"features": [list(f) for f in model.features], **feature_config(store, collections[0], sources)}
        if sources
        else {}
    )
    rows = Rows(store, data.parts, tuple(sources), inputs)
    y = data.target
    train_rows, test_rows = rows.take(data.train), rows.take(data.test)
    config = {"params": dataclasses.asdict(model.params), "split": dataclasses.asdict(split), **inputs}
    run = fingerprint(kind=kind, config=config, store=str(store.path.resolve()), parts=dict(data.parts))
    checkpoint = Checkpoint(Path(out) / CHECKPOINT, run)
    start = time.perf_counter()
    model.fit(
        train_rows,
        y[data.train],
        eval_set=(test_rows, y[data.test]),
        seed=split.seed,
        progress=progress,
        checkpoint=checkpoint,
    )
    fitted = time.perf_counter()
    predicted = np.full(len(y), np.nan)
    metrics: dict[str, Any] = {}
    for part, idx, part_rows in (("train", data.train, train_rows), ("test", data.test, test_rows)):
        predicted[idx], extra = model.evaluate(part_rows, progress)
        metrics[part] = regression_metrics(y[idx], predicted[idx]) | extra
    metrics["seconds"] = {"fit": fitted - start, "predict": time.perf_counter() - fitted}
    if checkpoint.restored:  # the fit's seconds are this run's; the history has every epoch's
        metrics["resumed_at_epoch"] = checkpoint.restored + 1
    metrics["snapshots"] = {**data.counts, "train": len(data.train), "test": len(data.test)}
    history = getattr(model, "history_", None)
    if history is not None:
        metrics["history"] = history
    provenance = {
        "store": str(store.path.resolve()),
        "collections": data.collections,
        "dataset": data.dataset,
        "versions": package_versions(model.packages),
    }
    model_dir = save_model_dir(
        out, kind, config, model.state(), dict(train_rows.parts), dict(test_rows.parts), metrics, provenance
    )
    title = f"{kind} on {data.name}"
    plot_parity(
        y, predicted, {"train": data.train, "test": data.test}, model_dir.path / PARITY, f"{title} ({data.dataset})"
    )
    if history is not None:
        plot_learning_curve(history, model_dir.path / "learning-curve.png", title)
    checkpoint.clear()
    return model_dir


def load_model(model_dir: ModelDir) -> Model:
    """The fitted model of a model directory."""
    kind = model_kind(model_dir.kind)
    model = kind.build(from_dict(type(kind.preset), model_dir.config["params"]))
    return model.load(model_dir.state(), _inputs(model_dir))


def _inputs(model_dir: ModelDir) -> dict[str, Any]:
    """What the model read when it was fitted (its features' groups, shapes and scalings)."""
    return {k: v for k, v in model_dir.config.items() if k not in ("params", "split")}


def model_rows(model_dir: ModelDir, store: FeatureStore, collection: str, rows: np.ndarray) -> Rows:
    """``rows`` of ``collection`` as the model of ``model_dir`` reads them: the stored features
    it was trained on (same parameters and versions), or a ValueError that says how to make
    them; positions for a model without features."""
    groups = model_dir.config.get("descriptor_groups", [])
    for group in groups:
        if group not in store.descriptor_groups(collection):
            raise ValueError(
                f"{collection} has no {group} features (the {model_dir.kind} model was trained on them); run "
                f"`phstore featurize {group.split('-', 1)[0]}` with the parameters `phstore info` "
                f"shows for {'+'.join(model_dir.provenance['collections'])}"
            )
    sources = tuple((g, v) for g, (_, v) in zip(groups, model_dir.config.get("features", [])))
    return Rows(store, [(collection, rows)], sources, _inputs(model_dir))
