"""Is a PH model's shift on 512-atom frames its reading of the histogram's noise? (results/paper.md)

A 512-atom histogram estimates the same distribution as a 216-atom one with less noise. Each
512-atom frame's H1 histogram is made again from a random 216/512 of its pairs (the same expected
histogram, a 216-atom histogram's noise) and the models predict both; the mean residual (bias)
and RMSE (meV/atom) are printed overall and by MD stage. A linear model's bias cannot depend on
the noise; a network's can.

    .venv/bin/python results/evidence/histogram_noise.py --store STORE MODELS/cnn-20ep MODELS/ridge
"""

from __future__ import annotations

import argparse

import numpy as np

from phstore import open_store
from phstore.modeldir import load_model_dir
from phstore.ph.vectorize import histogram
from phstore.training.train import load_model

COLLECTION, KEEP = "C512", 216 / 512


def diagrams(store, group: str, n: int) -> list[np.ndarray]:
    """Every snapshot's stored H1 ``(birth, death)`` pairs."""
    return [d[d[:, 0] == 1, 1:] for d in store.row_records(COLLECTION, group, slice(0, n))]


def predictor(model_dir):
    """The model's prediction (eV/atom) of rows of flattened histograms."""
    model = load_model(model_dir)
    if model_dir.kind == "ridge":
        return lambda x: (x - model.mean_) / model.scale_ @ model.coef_ + model.intercept_
    import torch

    def predict(x: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(((x - model.input_mean_) / model.input_scale_).astype(np.float32))
        model.net_.eval()
        with torch.no_grad():
            out = torch.cat([model.net_(z[i : i + 128]).squeeze(1) for i in range(0, len(z), 128)]).numpy()
        return out * float(model.target_std_) + float(model.target_mean_)

    return predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("models", nargs="+", help="model directories trained on the PH histogram")
    args = parser.parse_args()
    store = open_store(args.store)
    frames = store.frames(COLLECTION)
    y, stage, n = frames["energy_per_atom"].values, frames["process"].values, frames.sizes["snapshot"]
    rng = np.random.default_rng(0)
    for path in args.models:
        model_dir = load_model_dir(path)
        group = model_dir.config["descriptor_groups"][0]
        ph = store.descriptor_groups(COLLECTION)[group]["params"]
        grid = (ph["bins"], tuple(ph["range"]), ph["min_persistence"])
        pairs = diagrams(store, group, n)
        full = np.stack([histogram(p, *grid) for p in pairs]).reshape(n, -1)
        thin = np.stack([histogram(p[rng.random(len(p)) < KEEP], *grid) for p in pairs])
        predict = predictor(model_dir)
        for label, x in (("all pairs", full), ("216/512 of the pairs", thin.reshape(n, -1))):
            r = (predict(x) - y) * 1000
            stages = ", ".join(f"{s} {r[stage == s].mean():+.1f}" for s in np.unique(stage))
            print(f"{path}: {label}: bias {r.mean():+.1f}, RMSE {np.sqrt(np.mean(r**2)):.1f} ({stages})", flush=True)


if __name__ == "__main__":
    main()
