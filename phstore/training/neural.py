"""Neural models on stored features (PyTorch): the paper's CNN on PD histograms (§2.6) and the
MLP on atom-mean SOAP (§2.7), trained on the MSE of the energy per atom.

Features stream from the store chunk by chunk (:class:`ChunkStream`): an epoch visits the
store's snapshot chunks in a shuffled order and shuffles the rows inside each. Chunks are kept
on the device up to a budget (:data:`CACHE_BYTES`), so features that fit are read once and stay
resident (the paper's 16,830 CNN histograms take 1.1 GB: no host transfer per batch after the
first epoch); a larger set is streamed, never holding more than the budget plus one chunk.
Either way the batches, and so the training, are the same. Inputs are z-scored with
statistics of the training rows (computed in one streaming pass) and the target is z-scored
too; both are part of the learned state.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import numpy as np

from phstore.features import Parts, Rows, feature_scales, read_features
from phstore.metrics import regression_metrics
from phstore.store import FeatureStore
from phstore.training.checkpoint import Checkpoint, batch_bar, epochs
from phstore.training.model import Model
from phstore.training.params import NETWORKS, NeuralConfig

#: Bytes of features a training stream keeps on its device (GPU or host memory).
CACHE_BYTES = 2 << 30


def build_network(config: NeuralConfig, shapes: list[tuple[int, ...]]):
    """The torch module for inputs made of features of ``shapes`` (one snapshot's arrays).

    The CNN's convolution weights are channels-last: oneDNN's convolutions and max-pooling are
    then ~1.6x faster on CPU (12.7 → 7.4 min per paper-scale epoch on two cores), with the
    same weights and outputs to float32 rounding."""
    import torch
    from torch import nn

    if config.kind not in NETWORKS:
        raise ValueError(f"unknown network kind {config.kind!r}; choose one of {NETWORKS}")
    if config.kind == "cnn":
        if len(shapes) != 1 or len(shapes[0]) != 2:
            raise ValueError(f"the CNN takes one 2-D feature (a histogram), not {shapes}")
        shape = shapes[0]
        layers: list[nn.Module] = [nn.Unflatten(1, (1, *shape))]
        channels, side = 1, list(shape)
        for out in (64, 64, 32):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels, side = out, [s // 2 for s in side]
        layers += [
            nn.Flatten(),
            nn.Linear(channels * side[0] * side[1], config.hidden[0]),
            nn.ReLU(),
            nn.Linear(config.hidden[0], 1),
        ]
        return nn.Sequential(*layers).to(memory_format=torch.channels_last)
    sizes = [sum(int(np.prod(s)) for s in shapes), *config.hidden]
    layers = [m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], 1))


class ChunkStream:
    """Batches of ``(positions, features)`` of the snapshots of ``parts`` (positions run
    through the parts in order, as in :class:`~phstore.training.data.TrainingData`): each source
    ``(group, variable)`` flattened and concatenated into a float32 tensor on ``device``, read
    one store chunk at a time; positions come as a tensor on ``device`` too.

    Chunks read are kept on the device up to ``cache_bytes``; once every chunk is there they
    become one tensor, so later epochs of a store that fits read no Zarr and copy one index per
    epoch to the device. A larger store is read again each epoch, holding no more than the
    budget plus one chunk and one batch. After :meth:`standardize` rows come out z-scored,
    computed once per chunk read (once in all for a cached store), not once per batch.
    """

    def __init__(
        self,
        store: FeatureStore,
        parts: Parts,
        sources: list[tuple[str, str]],
        device: str = "cpu",
        cache_bytes: int | None = None,
    ) -> None:
        self.store, self.parts, self.sources = store, parts, sources
        self.device, self.cache_bytes = device, CACHE_BYTES if cache_bytes is None else cache_bytes
        self.by_chunk: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # (part, chunk) → positions, rows
        offset = 0
        for p, (_, rows) in enumerate(parts):
            chunks = store.chunk_of(rows)
            for c in np.unique(chunks):
                inside = np.flatnonzero(chunks == c)
                self.by_chunk[p, int(c)] = (offset + inside, rows[inside])
            offset += len(rows)
        self.n = offset
        self._cache: dict = {}
        self._cached_bytes = 0
        self._all = None  # every row, by position, once all chunks are cached
        self._zscore = None  # (mean, scale) on the device once standardize() is called

    def _chunk(self, key: tuple[int, int]):
        """Features of every row of one (part, chunk), from the cache or the store."""
        import torch

        if key in self._cache:
            return self._cache[key]
        coll, rows = self.parts[key[0]][0], self.by_chunk[key][1]
        x = torch.from_numpy(read_features(self.store, [(coll, rows)], self.sources, np.float32)).to(self.device)
        if self._zscore is not None:
            x.sub_(self._zscore[0]).div_(self._zscore[1])
        if self._cached_bytes + x.nbytes <= self.cache_bytes:
            self._cache[key] = x
            self._cached_bytes += x.nbytes
        return x

    def _gather_cache(self) -> None:
        """Once every chunk is cached: one tensor of all rows, indexed by position."""
        import torch

        if self._all is None and len(self._cache) == len(self.by_chunk):
            first = next(iter(self._cache.values()))
            self._all = torch.empty((self.n, first.shape[1]), dtype=first.dtype, device=first.device)
            for key, x in self._cache.items():
                self._all[torch.from_numpy(self.by_chunk[key][0]).to(first.device)] = x
            self._cache = {}

    def standardize(self, mean, scale) -> None:
        """From now on yield ``(x - mean) / scale`` (float32 on the device); rows already cached
        are standardised in place, once."""
        if self._zscore is not None:
            raise RuntimeError("the stream is already standardised")
        self._zscore = mean.float().to(self.device), scale.float().to(self.device)
        for x in [*self._cache.values(), *([self._all] if self._all is not None else [])]:
            x.sub_(self._zscore[0]).div_(self._zscore[1])

    def batches(self, subset: np.ndarray, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[tuple]:
        """``subset`` (positions) in batches of ``batch_size`` (the last may be smaller), filled
        chunk after chunk; chunks in a shuffled order and rows shuffled within each if ``rng``
        (the same order whether chunks come from the store or the cache)."""
        import torch

        wanted = np.zeros(self.n, dtype=bool)
        wanted[subset] = True
        keys = list(self.by_chunk)
        if rng is not None:
            keys = [keys[i] for i in rng.permutation(len(keys))]
        plan = []  # (chunk, rows of it to take in this order)
        for key in keys:
            take = np.flatnonzero(wanted[self.by_chunk[key][0]])
            if rng is not None:
                take = take[rng.permutation(len(take))]
            if len(take):
                plan.append((key, take))
        if self._all is not None:
            order = torch.from_numpy(np.concatenate([self.by_chunk[k][0][t] for k, t in plan])).to(self.device)
            for lo in range(0, len(order), batch_size):
                yield order[lo : lo + batch_size], self._all[order[lo : lo + batch_size]]
            return
        held_pos: list[np.ndarray] = []
        held_x: list = []
        held = 0
        for key, take in plan:
            chunk = self._chunk(key)
            held_pos.append(self.by_chunk[key][0][take])
            held_x.append(chunk[torch.from_numpy(take).to(chunk.device)])
            held += len(take)
            if held >= batch_size:
                pos, xs = torch.from_numpy(np.concatenate(held_pos)).to(self.device), torch.cat(held_x)
                full = held - held % batch_size
                for lo in range(0, full, batch_size):
                    yield pos[lo : lo + batch_size], xs[lo : lo + batch_size]
                held_pos, held_x, held = [np.concatenate(held_pos)[full:]], [xs[full:]], held - full
        if held:
            yield torch.from_numpy(np.concatenate(held_pos)).to(self.device), torch.cat(held_x)
        self._gather_cache()


def _forward(net, stream: ChunkStream, subset: np.ndarray, progress: bool = False) -> np.ndarray:
    """The network's (standardised) output for positions ``subset`` of the (standardised)
    stream's rows (a progress bar of its batches if ``progress``)."""
    import torch

    out = np.full(stream.n, np.nan)
    net.eval()
    size = 256
    with torch.no_grad():
        batches = [
            (pos, net(x).squeeze(1))
            for pos, x in batch_bar(stream.batches(subset, size), len(subset), size, "predict", progress)
        ]
    if batches:  # one copy from the device, not one per batch
        out[torch.cat([p for p, _ in batches]).cpu().numpy()] = torch.cat([y for _, y in batches]).cpu().numpy()
    return out


def build_optimizer(config: NeuralConfig, parameters):
    """``config``'s optimiser of ``parameters`` (SGD with Nesterov momentum, or Adam) and its
    learning-rate schedule (halved at each milestone)."""
    import torch

    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            parameters,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    else:
        optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), gamma=0.5)


class Network(Model):
    """A network of :class:`~phstore.training.params.NeuralConfig` (the CNN, the SOAP MLP,
    PH + SOAP) trained on the MSE of the z-scored energy per atom.

    Learned: ``net_`` (the torch module), ``input_mean_`` and ``input_scale_`` (the features'
    scaler), ``target_mean_`` and ``target_std_`` (eV/atom), ``history_`` (per epoch: train and
    test RMSE, meV/atom, and seconds).
    """

    packages = ("torch",)

    def fit(
        self,
        X: Rows,
        y: np.ndarray,
        eval_set: tuple[Rows, np.ndarray] | None = None,
        seed: int = 0,
        progress: bool = False,
        checkpoint: Checkpoint | None = None,
    ) -> "Network":
        import torch

        config = self.params
        device = "cuda" if torch.cuda.is_available() else "cpu"
        stream = ChunkStream(X.store, X.parts, list(X.sources), device)
        everything = np.arange(len(X))
        # centring and scaling statistics of the training rows, one streaming pass (float64)
        count, total, squares = 0, 0.0, 0.0
        for _, x in stream.batches(everything, 4096):
            count += len(x)
            total = total + x.double().sum(dim=0)
            squares = squares + (x.double() ** 2).sum(dim=0)
        mean = (total / count).cpu()
        std = (squares.cpu() / count - mean**2).clamp_min(0.0).sqrt()
        self.input_mean_ = mean.numpy()
        self.input_scale_ = feature_scales(std.numpy(), X.info)
        self.target_mean_, self.target_std_ = float(y.mean()), float(y.std() or 1.0)

        torch.manual_seed(seed)
        self.net_ = self.network(X.info).to(device)
        optimizer, schedule = build_optimizer(config, self.net_.parameters())
        stream.standardize(*self._scaler())
        target = torch.tensor((y - self.target_mean_) / self.target_std_, dtype=torch.float32, device=device)
        evaluation = None
        if eval_set is not None and len(eval_set[0]):
            evaluation = ChunkStream(eval_set[0].store, eval_set[0].parts, list(eval_set[0].sources), device)
            evaluation.standardize(*self._scaler())

        rng = np.random.default_rng(seed)
        self.history_ = []
        parts = {"net": self.net_, "optimizer": optimizer, "schedule": schedule}
        for epoch in epochs(config.epochs, checkpoint, parts, rng, self.history_, f"train {config.kind}", progress):
            started = time.perf_counter()
            self.net_.train()
            losses, sizes = [], []  # each batch's mean loss, kept on the device (no sync per batch)
            for pos, x in stream.batches(everything, config.batch_size, rng):
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(self.net_(x).squeeze(1), target[pos])
                loss.backward()
                optimizer.step()
                losses.append(loss.detach())
                sizes.append(len(pos))
            squared = float(torch.stack(losses) @ torch.tensor(sizes, dtype=torch.float32, device=device))
            schedule.step()
            record = {
                "epoch": epoch + 1,
                "train_rmse_mev": float(np.sqrt(squared / len(X)) * self.target_std_ * 1000),
            }
            if evaluation is not None:
                tested = self._predict(evaluation)
                record["test_rmse_mev"] = regression_metrics(eval_set[1], tested)["rmse_mev"]
            record["seconds"] = time.perf_counter() - started
            self.history_.append(record)
        return self

    def _scaler(self):
        import torch

        return torch.from_numpy(np.asarray(self.input_mean_)), torch.from_numpy(np.asarray(self.input_scale_))

    def _predict(self, stream: ChunkStream, progress: bool = False) -> np.ndarray:
        standardised = _forward(self.net_, stream, np.arange(stream.n), progress)
        return standardised * float(self.target_std_) + float(self.target_mean_)

    def predict(self, X: Rows, progress: bool = False) -> np.ndarray:
        stream = ChunkStream(X.store, X.parts, list(X.sources), next(self.net_.parameters()).device.type)
        stream.standardize(*self._scaler())
        return self._predict(stream, progress)

    def network(self, inputs: dict) -> Any:
        return build_network(self.params, [tuple(s) for s in inputs["feature_shapes"]])
