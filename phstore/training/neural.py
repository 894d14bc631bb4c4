"""Neural models on stored features (PyTorch): the paper's CNN on PD histograms (§2.6) and the
MLP on atom-mean SOAP (§2.7), trained on the MSE of the energy per atom.

Features stream from the store chunk by chunk (:class:`ChunkStream`): an epoch visits the
store's snapshot chunks in a shuffled order and shuffles the rows inside each, so no more than
one chunk of features is in memory however large the store. Inputs are z-scored with
statistics of the training split (computed in one streaming pass) and the target is z-scored
too; both are saved with the weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from phstore.store import FeatureStore
from phstore.training.data import Feature, Parts, TrainingData, collection_list, feature_config, feature_sources, model_sources
from phstore.training.metrics import regression_metrics
from phstore.training.modeldir import ModelDir
from phstore.training.split import Split


@dataclass(frozen=True)
class NeuralConfig:
    """A network on stored features (concatenated when several) and how it is optimised
    (defaults: the paper's CNN)."""

    kind: str = "cnn"
    features: tuple[Feature, ...] = (("ph", "histogram"),)
    optimizer: str = "sgd"
    lr: float = 0.0015
    momentum: float = 0.9
    weight_decay: float = 0.001
    milestones: tuple[int, ...] = (200, 400, 800, 1200)
    epochs: int = 1600
    batch_size: int = 32
    hidden: tuple[int, ...] = (64,)

    @classmethod
    def cnn(cls, **overrides) -> "NeuralConfig":
        """Seed paper §2.6: 3×3 convolutions of 64, 64, 32 channels with max-pooling, two fully
        connected layers, ReLU; SGD (Nesterov 0.9, weight decay 0.001), lr 0.0015 halved at
        epochs 200, 400, 800, 1200; 1600 epochs."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def soap_mlp(cls, **overrides) -> "NeuralConfig":
        """Seed paper §2.7: atom-mean SOAP → two hidden layers of 40 → energy; Adam, lr 0.001
        halved at epochs 200, 500, 1000; 2000 epochs."""
        return dataclasses.replace(
            cls(kind="soap-mlp", features=(("soap", "mean"),), optimizer="adam", lr=0.001, momentum=0.0,
                weight_decay=0.0, milestones=(200, 500, 1000), epochs=2000, hidden=(40, 40)), **overrides)

    @classmethod
    def ph_soap(cls, **overrides) -> "NeuralConfig":
        """PH + SOAP, the combination the paper's conclusion proposes: the SOAP MLP's layers and
        optimiser on the normalised PH histogram concatenated with the atom-mean SOAP."""
        return cls.soap_mlp(kind="ph-soap", features=(("ph", "histogram"), ("soap", "mean")), **overrides)


def build_network(config: NeuralConfig, shapes: list[tuple[int, ...]]):
    """The torch module for inputs made of features of ``shapes`` (one snapshot's arrays)."""
    from torch import nn

    if config.kind == "cnn":
        if len(shapes) != 1 or len(shapes[0]) != 2:
            raise ValueError(f"the CNN takes one 2-D feature (a histogram), not {shapes}")
        shape = shapes[0]
        layers: list[nn.Module] = [nn.Unflatten(1, (1, *shape))]
        channels, side = 1, list(shape)
        for out in (64, 64, 32):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels, side = out, [s // 2 for s in side]
        layers += [nn.Flatten(), nn.Linear(channels * side[0] * side[1], config.hidden[0]), nn.ReLU(),
                   nn.Linear(config.hidden[0], 1)]
        return nn.Sequential(*layers)
    sizes = [sum(int(np.prod(s)) for s in shapes), *config.hidden]
    layers = [m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], 1))


class ChunkStream:
    """Batches of ``(positions, features)`` of the snapshots of ``parts`` (positions run
    through the parts in order, as in :class:`~phstore.training.data.TrainingData`): each source
    ``(group, variable)`` flattened and concatenated, read one store chunk at a time."""

    def __init__(self, store: FeatureStore, parts: Parts, sources: list[tuple[str, str]]) -> None:
        self.store, self.parts, self.sources = store, parts, sources
        self.by_chunk: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # (part, chunk) → positions, rows
        offset = 0
        for p, (_, rows) in enumerate(parts):
            chunks = rows // store.chunk_size
            for c in np.unique(chunks):
                inside = np.flatnonzero(chunks == c)
                self.by_chunk[p, int(c)] = (offset + inside, rows[inside])
            offset += len(rows)
        self.n = offset

    def _read(self, part: int, rows: np.ndarray) -> np.ndarray:
        region = slice(int(rows.min()), int(rows.max()) + 1)  # within one chunk
        coll = self.parts[part][0]
        xs = [self.store.read_rows(coll, g, region, [v])[v][rows - region.start] for g, v in self.sources]
        return np.concatenate([x.reshape(len(rows), -1) for x in xs], axis=1).astype(np.float32)

    def batches(self, subset: np.ndarray, batch_size: int, rng: np.random.Generator | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``subset`` (positions) in batches; shuffled by chunk and within it if ``rng``."""
        wanted = np.zeros(self.n, dtype=bool)
        wanted[subset] = True
        order = list(self.by_chunk)
        if rng is not None:
            order = [order[i] for i in rng.permutation(len(order))]
        for part, chunk in order:
            positions, rows = self.by_chunk[part, chunk]
            keep = wanted[positions]
            if not keep.any():
                continue
            positions, x = positions[keep], self._read(part, rows[keep])
            if rng is not None:
                perm = rng.permutation(len(positions))
                positions, x = positions[perm], x[perm]
            for lo in range(0, len(positions), batch_size):
                yield positions[lo:lo + batch_size], x[lo:lo + batch_size]


def _forward(net, stream: ChunkStream, subset: np.ndarray, mean, scale) -> np.ndarray:
    """The network's (standardised) output for positions ``subset`` of the stream's rows."""
    import torch

    out = np.full(stream.n, np.nan)
    device = mean.device
    net.eval()
    with torch.no_grad():
        for pos, x in stream.batches(subset, 256):
            out[pos] = net((torch.from_numpy(x).to(device) - mean) / scale).squeeze(1).cpu().numpy()
    return out


def network_of(model: ModelDir):
    """An untrained network of a model directory's architecture."""
    net = model.config["network"]
    config = NeuralConfig(**{k: tuple(map(tuple, v)) if k == "features" else tuple(v) if isinstance(v, list) else v
                             for k, v in net.items()})
    return build_network(config, [tuple(s) for s in model.config["feature_shapes"]])


def predict_neural(model: ModelDir, store: FeatureStore, collection: str, rows: np.ndarray) -> np.ndarray:
    """Energies per atom (eV/atom) of ``rows`` of ``collection`` from the model's stored features."""
    net = network_of(model)
    state = model.state_dict()
    mean, scale = state.pop("input_mean").float(), state.pop("input_scale").float()
    net.load_state_dict(state)
    stream = ChunkStream(store, [(collection, rows)], model_sources(model, store, collection))
    target = model.config["target"]
    return _forward(net, stream, np.arange(len(rows)), mean, scale) * target["std"] + target["mean"]


def train_neural(
    store_path: str | Path,
    collections: str | Sequence[str],
    out: str | Path,
    config: NeuralConfig = NeuralConfig.cnn(),
    split: Split = Split(),
    dataset: str | None = None,
    descriptor_keys: tuple[str, ...] = (),
    progress: bool = True,
) -> ModelDir:
    """Train ``config``'s network on the stored features of one or more collections (one
    dataset) and write a model directory with a learning curve (train and test RMSE, meV/atom, per epoch)."""
    import torch

    store = FeatureStore(store_path, mode="r")
    collections = collection_list(collections)
    sources = feature_sources(store, collections, config.features, descriptor_keys)
    data = TrainingData.select(store, collections, dataset, split, done_in=tuple(g for g, _ in sources))
    stream = ChunkStream(store, data.parts, sources)
    inputs = feature_config(store, collections[0], sources)

    # z-score statistics of the training split, one streaming pass
    count, total, squares = 0, 0.0, 0.0
    for _, x in stream.batches(data.train, 4096):
        count += len(x)
        total = total + x.astype(np.float64).sum(axis=0)
        squares = squares + (x.astype(np.float64) ** 2).sum(axis=0)
    mean = total / count
    scale = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    scale[scale < 1e-12] = 1.0
    y_mean, y_std = float(data.target[data.train].mean()), float(data.target[data.train].std() or 1.0)

    torch.manual_seed(split.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = build_network(config, [tuple(s) for s in inputs["feature_shapes"]]).to(device)
    params = net.parameters()
    optimizer = (torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                                 weight_decay=config.weight_decay)
                 if config.optimizer == "sgd" else torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay))
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), gamma=0.5)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device)
    scale_t = torch.tensor(scale, dtype=torch.float32, device=device)
    y = torch.tensor((data.target - y_mean) / y_std, dtype=torch.float32, device=device)

    def predict(subset: np.ndarray) -> np.ndarray:
        return _forward(net, stream, subset, mean_t, scale_t) * y_std + y_mean

    rng = np.random.default_rng(split.seed)
    history = []
    for epoch in tqdm(range(config.epochs), desc=f"train {config.kind} on {data.name}", unit="epoch",
                      disable=not progress):
        net.train()
        squared = 0.0  # the epoch's training loss, summed over snapshots (standardised units)
        for pos, x in stream.batches(data.train, config.batch_size, rng):
            optimizer.zero_grad()
            pred = net((torch.from_numpy(x).to(device) - mean_t) / scale_t).squeeze(1)
            loss = torch.nn.functional.mse_loss(pred, y[pos])
            loss.backward()
            optimizer.step()
            squared += float(loss.detach()) * len(pos)
        schedule.step()
        test = predict(data.test)[data.test]
        history.append({
            "epoch": epoch + 1,
            "train_rmse_mev": float(np.sqrt(squared / len(data.train)) * y_std * 1000),
            "test_rmse_mev": regression_metrics(data.target[data.test], test)["rmse_mev"],
        })

    state = {**net.state_dict(), "input_mean": torch.from_numpy(mean), "input_scale": torch.from_numpy(scale)}
    cfg = {
        "network": dataclasses.asdict(config),
        "features": [list(f) for f in config.features],
        "split": dataclasses.asdict(split),
        **inputs,
        "target": {"mean": y_mean, "std": y_std},
    }
    model = data.finish(out, config.kind, cfg, state, predict(np.arange(len(data))), ("torch",),
                        {"history": history})
    from phstore.plots import plot_learning_curve

    plot_learning_curve(history, model.path / "learning-curve.png", f"{config.kind} on {data.name}")
    return model
