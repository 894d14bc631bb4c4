"""Training from the feature store vs from arrays already in memory (issue 4's target: ≥ 0.9×).

* Ridge: the registry's Ridge model's read of the PH histograms from Zarr plus its fit (scaler +
  Ridge, ``metrics["seconds"]["fit"]`` of ``train("ridge", ...)``) against the same fit on the float32 array already
  in memory as float64, the precision phstore's read gives the fit (scikit-learn would keep a
  float32 array float32 and fit it about 4× faster, in either path). The model directory and
  parity plot (~0.7 s whatever the size) are left out of both. The read grows as n and the fit
  as n² (the kernel of n snapshots × 16,384 bins), so the ratio depends on ``--frames``: measure
  at the size you train (the paper's 216-atom set is 16,830 frames).
* CNN and SOAP MLP: training samples per second of ``train("cnn" | "soap-mlp", ...)`` (features streamed from the
  store, a test pass every epoch; its per-epoch seconds from ``metrics["history"]``) against the
  same network, optimiser, batch size and per-epoch test pass on tensors already on the device.
  The first epoch (which fills the chunk cache) is reported apart from the steady state, and
  seconds per epoch of the store path with its features resident on the device (the default:
  read once) beside the same training streamed from the store every epoch
  (``neural.CACHE_BYTES = 0``); the paper's CNN target is ≤ 0.3 s per epoch for 13,464
  training frames on one H200 (``--frames 16830 --models cnn``).

The store is real (frames ingested by phstore, descriptor groups with PH's and SOAP's provenance)
but its feature values are synthetic: sparse normalised 128×128 histograms and 360-dim means
with energies linear in them. This measures reading and training, not featurization, and needs
neither LAMMPS nor HomCloud, so it also runs on a GPU machine (``--device`` is whatever torch
sees; the CNN runs on CUDA when it is there).

    python benchmarks/train_from_store.py [--frames 2048] [--cnn-epochs 3] [--mlp-epochs 30] [--models ridge]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from phstore.descriptors import PH, SOAP
from phstore.ingest import ingest
from phstore.store import DONE, FeatureStore, VariableSpec
from phstore.training import neural
from phstore.training.data import TrainingData
from phstore.training.neural import build_network, build_optimizer
from phstore.training.params import NeuralConfig
from phstore.training.split import Split
from phstore.training.train import train

COLLECTION = "C64"


def build_store(work: Path, n: int, chunk: int, seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray]:
    """A store of ``n`` 64-atom frames with synthetic PH histograms and SOAP means; returns the
    path and the in-memory features (n × 16384, n × 360)."""
    rng = np.random.default_rng(seed)
    hist = np.zeros((n, 128, 128), dtype=np.float32)
    for i in range(n):  # a few hundred occupied bins near the diagonal, as real H1 histograms
        b = rng.integers(0, 100, 300)
        hist[i, b, np.minimum(127, b + rng.integers(1, 28, 300))] += rng.random(300).astype(np.float32)
    hist /= hist.sum(axis=(1, 2), keepdims=True)
    soap = rng.random((n, 360), dtype=np.float32)
    w = rng.normal(size=128 * 128)
    energy = -7.0 + 50 * hist.reshape(n, -1) @ w / 128 + soap @ rng.normal(size=360) * 0.01
    frames = []
    for i in range(n):
        atoms = Atoms("C64", positions=rng.random((64, 3)) * 8.5, cell=[8.5] * 3, pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=64 * energy[i])
        frames.append(atoms)
    ase.io.write(work / "frames.xyz", frames, format="extxyz")
    path = work / "s.zarr"
    ingest(path, [work / "frames.xyz"], chunk_size=chunk, progress=False, min_distance=0)  # random atoms overlap
    store = FeatureStore(path, mode="a")
    mean = {"mean": VariableSpec(("feature",), (360,), "float32", np.nan)}  # SOAP's, without asking dscribe
    for d, values, variables in ((PH(), {"histogram": hist}, PH().variables(64)), (SOAP(), {"mean": soap}, mean)):
        with store.writer("benchmark"):
            store.ensure_descriptor(COLLECTION, d.group, d.provenance(), variables)
            for lo in range(0, n, chunk):
                region = slice(lo, min(n, lo + chunk))
                values_ = {k: v[region] for k, v in values.items()}
                store.commit_rows(COLLECTION, d.group, region, values_, np.full(region.stop - lo, DONE))
    return path, hist.reshape(n, -1), soap


def ridge_in_memory(X: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    """Seconds to fit the scaler and Ridge (alpha 200) on rows ``train`` of an in-memory array."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    t = time.perf_counter()
    scaler = StandardScaler().fit(X[train])
    Ridge(alpha=200.0).fit(scaler.transform(X[train]), y[train])
    return time.perf_counter() - t


def neural_in_memory(
    config: NeuralConfig,
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    shapes: list[tuple[int, ...]],
    device: str,
) -> list[float]:
    """The same training on tensors already on the device: seconds of each epoch."""
    torch.manual_seed(0)
    x = torch.tensor(X, device=device)
    mean, scale = x[train].mean(0), x[train].std(0, unbiased=False).clamp_min(1e-12)
    x = (x - mean) / scale
    target = torch.tensor((y - y[train].mean()) / y[train].std(), dtype=torch.float32, device=device)
    net = build_network(config, shapes).to(device)
    opt, schedule = build_optimizer(config, net.parameters())
    train_t = torch.tensor(train, device=device)
    seconds = []
    for _ in range(config.epochs):
        t = time.perf_counter()
        net.train()
        order = train_t[torch.randperm(len(train), device=device)]
        for lo in range(0, len(order), config.batch_size):
            idx = order[lo : lo + config.batch_size]
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x[idx]).squeeze(1), target[idx])
            loss.backward()
            opt.step()
        schedule.step()
        net.eval()
        with torch.no_grad():
            float(((net(x[test]).squeeze(1) - target[test]) ** 2).mean())  # synchronises, as the store path does
        seconds.append(time.perf_counter() - t)
    return seconds


def epoch_seconds(config: NeuralConfig, store: Path, out: Path) -> list[float]:
    """Seconds of each epoch of ``train`` from the store (the test pass included)."""
    model = train(config.kind, store, COLLECTION, out, config, progress=False)
    return [h["seconds"] for h in model.metrics["history"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=32, help="snapshots per store chunk")
    parser.add_argument("--cnn-epochs", type=int, default=3)
    parser.add_argument("--mlp-epochs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2, help="store/memory pairs per model; medians are reported")
    parser.add_argument("--models", default="ridge,cnn,soap-mlp", help="comma-separated subset to run")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"device {device} "
        f"({torch.cuda.get_device_name() if device == 'cuda' else f'{torch.get_num_threads()} threads'}), "
        f"{args.frames} frames, chunk {args.chunk}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path, hist, soap = build_store(work, args.frames, args.chunk)
        store = FeatureStore(path, mode="r")
        data = TrainingData.select(store, COLLECTION, None, Split())
        y = data.target
        print(f"{'model':9s} {'from store':>12s} {'in memory':>12s} {'ratio':>6s}  (target ≥ 0.9×)")

        models = args.models.split(",")
        if "ridge" in models:
            pairs = []
            hist64 = hist.astype(np.float64)
            for r in range(args.rounds):
                spent = train("ridge", path, COLLECTION, work / f"ridge{r}").metrics["seconds"]
                pairs.append((spent["fit"], ridge_in_memory(hist64, y, data.train)))
            s, m = np.median(pairs, axis=0)
            print(
                f"{'ridge':9s} {s:10.2f} s {m:10.2f} s {np.median([b / a for a, b in pairs]):5.2f}×  "
                f"(read + fit of {len(data.train)} × {hist.shape[1]})"
            )
            del hist64

        for name, config, X, shapes in (
            ("cnn", NeuralConfig.cnn(epochs=args.cnn_epochs), hist, [(128, 128)]),
            ("soap-mlp", NeuralConfig.soap_mlp(epochs=args.mlp_epochs), soap, [(360,)]),
        ):
            if name not in models:
                continue
            n = len(data.train)
            pairs, firsts, epochs = [], [], []
            for r in range(args.rounds):
                store_s = epoch_seconds(config, path, work / f"{name}{r}")
                cache, neural.CACHE_BYTES = neural.CACHE_BYTES, 0
                try:
                    streamed_s = epoch_seconds(config, path, work / f"{name}{r}-streamed")
                finally:
                    neural.CACHE_BYTES = cache
                memory_s = neural_in_memory(config, X, y, data.train, data.test, shapes, device)
                firsts.append((n / store_s[0], n / memory_s[0]))
                pairs.append((n * (len(store_s) - 1) / sum(store_s[1:]), n * (len(memory_s) - 1) / sum(memory_s[1:])))
                epochs.append((np.median(store_s[1:]), np.median(streamed_s[1:])))
            s, m = np.median(pairs, axis=0)
            f_s, f_m = np.median(firsts, axis=0)
            resident, streamed = np.median(epochs, axis=0)
            print(
                f"{name:9s} {s:8.0f} /s   {m:8.0f} /s   {np.median([a / b for a, b in pairs]):5.2f}×  "
                f"(training samples/s, epochs 2–{config.epochs}; first epoch {f_s:.0f} vs {f_m:.0f} /s)\n"
                f"{'':9s} seconds per epoch: {resident:.3f} resident, {streamed:.3f} streamed every epoch"
            )


if __name__ == "__main__":
    main()
