"""Where in the histogram does a linear PH model's 512-atom shift come from? (results/paper.md)

A linear model's mean residual on the 512-atom frames, less its mean residual on the 216-atom
frames, is ``w · (x̄512 − x̄216) − (ȳ512 − ȳ216)``: the histograms' difference seen through the
weights, less the labels' difference. Both are taken within each (density, MD stage) stratum and
averaged with the 512-atom frames' weights, so the shift is not a difference in which frames the
two sets hold. The weights' part is split over the birth–death grid (Å²): by persistence
(death − birth) and by birth, and the bins that carry most of it are listed. All in meV/atom.

    .venv/bin/python results/evidence/cell_size_shift.py --store STORE MODELS/ridge-phist-atom [--plot PNG]
"""

from __future__ import annotations

import argparse

import numpy as np

from phstore import open_store
from phstore.modeldir import load_model_dir
from phstore.plots import plot_coefficient_map
from phstore.training.train import load_model

SMALL, LARGE = "C216", "C512"


def strata_means(frames, x: np.ndarray) -> dict[tuple, tuple[int, np.ndarray, float]]:
    """Per (density, MD stage) of ``frames``: frame count, mean histogram of ``x`` (one per frame,
    flattened), mean energy (eV/atom)."""
    density, stage, y = frames["density"].values.round(3), frames["process"].values, frames["energy_per_atom"].values
    x = np.asarray(x).reshape(len(y), -1)
    means = {}
    for key in sorted(set(zip(density, stage, strict=True))):
        rows = (density == key[0]) & (stage == key[1])
        means[key] = (int(rows.sum()), x[rows].mean(axis=0, dtype=np.float64), float(y[rows].mean()))
    return means


def run_spread(frames) -> dict[str, float]:
    """Per MD stage: the standard deviation (meV/atom) of one run's mean energy about its density's
    mean, pooled over the densities: how far one run's stratum mean may sit from another's."""
    density, stage = frames["density"].values.round(3), frames["process"].values
    run, y = frames["trajectory"].values, 1000 * frames["energy_per_atom"].values
    spread = {}
    for s in np.unique(stage):
        deviations = []
        for d in np.unique(density[stage == s]):
            rows = (stage == s) & (density == d)
            means = [y[rows & (run == r)].mean() for r in np.unique(run[rows])]
            deviations += list(np.array(means) - np.mean(means)) if len(means) > 1 else []
        spread[s] = float(np.sqrt(np.mean(np.square(deviations)) * len(deviations) / max(len(deviations) - 1, 1)))
    return spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("model", help="a Ridge model directory trained on a PH histogram of C216")
    parser.add_argument("--plot", help="PNG of the weights' part on the birth-death grid")
    args = parser.parse_args()
    store, model_dir = open_store(args.store), load_model_dir(args.model)
    model = load_model(model_dir)
    group, (bins, _) = model_dir.config["descriptor_groups"][0], model_dir.config["feature_shapes"][0]
    lo, hi = model_dir.config["descriptor_params"][0]["range"]
    w = model.coef_ / model.scale_ * 1000  # meV/atom per unit of each bin
    frames = {c: store.frames(c) for c in (SMALL, LARGE)}
    small, large = (strata_means(frames[c], store.descriptor(c, group)["histogram"].values) for c in (SMALL, LARGE))
    shared = sorted(set(small) & set(large))

    def differences(keys: list[tuple]) -> tuple[np.ndarray, float, int]:
        """x̄512 − x̄216 and ȳ512 − ȳ216 (meV/atom) over ``keys``, weighted by the 512-atom frames."""
        n = np.array([large[k][0] for k in keys], dtype=np.float64)
        dx = sum(c * (large[k][1] - small[k][1]) for c, k in zip(n, keys, strict=True)) / n.sum()
        dy = 1000 * sum(c * (large[k][2] - small[k][2]) for c, k in zip(n, keys, strict=True)) / n.sum()
        return dx, dy, int(n.sum())

    spread = run_spread(frames[SMALL])
    for stage in sorted({k[1] for k in shared}):
        dx, dy, n = differences([k for k in shared if k[1] == stage])
        print(f"{stage} ({n} frames): w·Δx̄ {w @ dx:+.1f}, Δȳ {dy:+.1f}, shift {w @ dx - dy:+.1f} "
              f"(one 216-atom run's mean about its density's: ± {spread[stage]:.1f})")  # fmt: skip
    dx, dy, n = differences(shared)
    part = (w * dx).reshape(bins, bins)  # [birth bin, death bin]
    print(f"all {len(shared)} strata ({n} frames): weights' part w·Δx̄ {part.sum():+.1f}, labels' part Δȳ {dy:+.1f}, "
          f"shift {part.sum() - dy:+.1f} meV/atom")  # fmt: skip
    print(f"histogram mass Δ: {dx.sum():+.4f} ({sum(large[k][1].sum() for k in shared) / len(shared):.4f} at 512)")
    centres = lo + (np.arange(bins) + 0.5) * (hi - lo) / bins
    birth, death = np.meshgrid(centres, centres, indexing="ij")
    persistence = death - birth
    for label, value, edges in (("persistence", persistence, (0, 0.25, 0.5, 1, 2, 4, 8)),
                                ("birth", birth, (0, 1, 2, 3, 4, 6, 8))):  # fmt: skip
        cells = [f"[{a}, {b}) {part[(value >= a) & (value < b)].sum():+.1f}" for a, b in zip(edges, edges[1:])]
        print(f"by {label} (Å²): " + ", ".join(cells))
    top = np.argsort(-np.abs(part), axis=None)[:8]
    print("largest bins: " + ", ".join(f"({birth.flat[i]:.2f}, {death.flat[i]:.2f}) {part.flat[i]:+.2f}" for i in top))
    if args.plot:
        title = f"{model_dir.path.name}: 512-atom shift by bin"
        plot_coefficient_map(part, (lo, hi), args.plot, title, "w · (x̄512 − x̄216), meV/atom per bin")


if __name__ == "__main__":
    main()
