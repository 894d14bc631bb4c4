"""Figures for people who would rather look than read (matplotlib, written to PNG)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import xarray as xr

from phstore.store import DONE, FeatureStore
from phstore.training.metrics import regression_metrics


@contextmanager
def _figure(path: str | Path, size: tuple[float, float], title: str) -> Iterator[tuple]:
    """``(fig, ax)`` of a new figure, titled, laid out and written to ``path`` on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=120)
    try:
        yield fig, ax
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def plot_histogram(hist: np.ndarray, extent: tuple[float, float], path: str | Path, title: str = "") -> Path:
    """Draw a birth × death histogram (probability per bin, log colour scale) to ``path``.

    ``extent`` is the ``(low, high)`` range of both axes in Å² (squared radii).
    """
    from matplotlib.colors import LogNorm

    with _figure(path, (5, 4.2), title) as (fig, ax):
        masked = np.ma.masked_less_equal(hist, 0)
        image = ax.imshow(masked.T, origin="lower", extent=(*extent, *extent), norm=LogNorm(), cmap="viridis")
        ax.plot(extent, extent, color="0.5", lw=0.8)
        ax.set_xlabel("birth (Å²)")
        ax.set_ylabel("death (Å²)")
        fig.colorbar(image, ax=ax, label="probability per bin")
    return Path(path)


def plot_mean_ph_histogram(store: FeatureStore, selection: xr.Dataset, path: str | Path) -> int:
    """Draw the mean PH histogram of the finished snapshots of ``selection`` (from
    :meth:`FeatureStore.sel`) to ``path``; return how many snapshots it averages."""
    names = [v for v in selection.data_vars if v.startswith("ph") and v.endswith("_histogram")]
    if not names or not selection.sizes["snapshot"]:
        raise ValueError("the selection has no PH features; run `phstore featurize --descriptor ph` first")
    var = names[0]
    group = selection[var].attrs["descriptor_group"]
    low, high = store.descriptor_groups(selection.attrs["collection"])[group]["params"]["range"]
    done = selection[f"{var.removesuffix('_histogram')}_status"].values == DONE
    mean = selection[var].values[done].mean(axis=0)
    plot_histogram(mean, (low, high), path, f"mean H1 histogram of {int(done.sum())} snapshots ({var})")
    return int(done.sum())


def plot_parity(target: np.ndarray, predicted: np.ndarray, sets: dict[str, np.ndarray], path: str | Path,
                title: str = "") -> Path:
    """Predicted vs reference energy per atom (eV/atom) of each named set of positions (e.g.
    train blue and test red as in the seed paper's Figs. 2 and 3), each set's RMSE (meV/atom)
    in the legend."""
    with _figure(path, (4.6, 4.4), title) as (_, ax):
        for (label, idx), colour in zip(sets.items(), ("tab:blue", "tab:red", "tab:green", "tab:orange")):
            rmse = regression_metrics(target[idx], predicted[idx])["rmse_mev"]
            ax.scatter(target[idx], predicted[idx], s=8, alpha=0.6, color=colour, label=f"{label} (RMSE {rmse:.1f} meV/atom)")
        low, high = float(min(target.min(), predicted.min())), float(max(target.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="0.4", lw=0.8)
        ax.set_xlabel("reference energy (eV/atom)")
        ax.set_ylabel("predicted energy (eV/atom)")
        ax.legend(fontsize=8)
    return Path(path)


def plot_learning_curve(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Train and test RMSE (meV/atom, log scale) against the epoch."""
    with _figure(path, (5, 3.6), title) as (_, ax):
        epochs = [h["epoch"] for h in history]
        for part, colour in (("train", "tab:blue"), ("test", "tab:red")):
            ax.plot(epochs, [h[f"{part}_rmse_mev"] for h in history], color=colour, label=part)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("RMSE (meV/atom)")
        ax.legend(fontsize=8)
    return Path(path)
