"""What the normalised PH histogram forgets: the number of H1 pairs (results/paper.md).

Prints, per density, the H1 pairs per atom and their correlation with the energy per atom, then
fits Ridge (α 200, the paper's split of the model ``--ridge``) on the stored histogram with the
pair count as one more column, and with a 32×32 H2 histogram per atom and the voids alive at
8 Å² added to the per-atom H1 histogram (``featurize phist --normalise atom``).

    .venv/bin/python results/evidence/pair_count.py --store STORE --ridge MODELS/ridge \\
        --phist phist-0ef3476b8bd3 --plot results/figures/pair-count.png
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import Ridge

from phstore import open_store
from phstore.modeldir import load_model_dir
from phstore.ph.vectorize import histogram_bins

COLLECTION, H2_BINS, RANGE, MIN_PERSISTENCE = "C216", 32, (0.0, 8.0), 1e-5


def diagram_counts(store, group: str, n: int, atoms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per snapshot: finite H1 pairs in the range per atom, the H2 histogram per atom, H2 classes alive at its end."""
    pairs, h2, voids = np.zeros(n), np.zeros((n, H2_BINS * H2_BINS)), np.zeros(n)
    size = store.shard_size(COLLECTION, group)
    for shard in range(store.n_shards(COLLECTION, group)):
        records, _ = store.records(COLLECTION, group, shard)
        row = records[:, 0].astype(int) + shard * size
        degree, birth, death = records[:, 1], records[:, 2], records[:, 3]
        finite = np.isfinite(death) & (death - birth > MIN_PERSISTENCE)
        h1 = (degree == 1) & finite & (death <= RANGE[1])
        pairs += np.bincount(row[h1], minlength=n) / atoms
        d2 = (degree == 2) & finite
        ib, idb, inside = histogram_bins(birth[d2], death[d2], H2_BINS, RANGE)
        np.add.at(h2, (row[d2][inside], ib[inside] * H2_BINS + idb[inside]), 1.0 / atoms)
        voids += np.bincount(row[(degree == 2) & ~np.isfinite(death)], minlength=n)
    return pairs, h2, voids


def ridge_rmse(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, density: np.ndarray) -> str:
    """Test RMSE (meV/atom) of Ridge α 200 on z-scored ``x``, overall and per density."""
    mean, std = x[train].mean(0), x[train].std(0)
    std[std < 1e-12] = 1.0
    fit = Ridge(alpha=200.0).fit((x[train] - mean) / std, y[train])
    err = ((x[test] - mean) / std @ fit.coef_ + fit.intercept_ - y[test]) * 1000
    per = " ".join(f"{d:.1f}:{np.sqrt(np.mean(err[density[test] == d] ** 2)):.0f}" for d in np.unique(density[test]))
    return f"test {np.sqrt(np.mean(err**2)):.1f}  [{per}]"


def plot(pairs: np.ndarray, energy: np.ndarray, density: np.ndarray, path: str) -> None:
    """Energy per atom against H1 pairs per atom, one colour per density (every fifth frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120, layout="constrained")
    points = ax.scatter(pairs[::5], energy[::5], c=density[::5], s=3, cmap="viridis")
    fig.colorbar(points, label="density (g/cm³)")
    ax.set(xlabel="H1 pairs per atom (death ≤ 8 Å²)", ylabel="energy (eV/atom)")
    ax.set_title("what the normalised histogram forgets: the number of pairs", fontsize=9)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--ridge", required=True, help="the paper's Ridge model directory (its PH group and split)")
    parser.add_argument("--phist", required=True, help="the per-atom phist group")
    parser.add_argument("--plot", help="PNG of the energy against the pairs per atom, coloured by density")
    args = parser.parse_args()
    store, model = open_store(args.store), load_model_dir(args.ridge)
    group = model.config["descriptor_groups"][0]
    frames = store.frames(COLLECTION)
    y, density, n = frames["energy_per_atom"].values, frames["density"].values, frames.sizes["snapshot"]
    atoms = int(frames["positions"].shape[1])
    pairs, h2, voids = diagram_counts(store, group, n, atoms)
    train, test = model.train[COLLECTION], model.test[COLLECTION]
    labelled = np.sort(np.concatenate([train, test]))
    for d in np.unique(density[labelled]):
        m = labelled[density[labelled] == d]
        r = np.corrcoef(pairs[m], y[m])[0, 1]
        print(f"{d:.1f} g/cm³: {pairs[m].mean():.2f} ± {pairs[m].std():.2f} H1 pairs per atom, correlation {r:+.2f}")
    if args.plot:
        plot(pairs[labelled], y[labelled], density[labelled], args.plot)
    normalised = np.asarray(store.descriptor(COLLECTION, group)["histogram"].values, dtype=np.float64).reshape(n, -1)
    print("normalised + pairs per atom:", ridge_rmse(np.c_[normalised, pairs], y, train, test, density))
    del normalised
    per_atom = np.asarray(store.descriptor(COLLECTION, args.phist)["histogram"].values, dtype=np.float64).reshape(n, -1)
    print("per atom + H2 per atom + voids:", ridge_rmse(np.c_[per_atom, h2, voids], y, train, test, density))


if __name__ == "__main__":
    main()
