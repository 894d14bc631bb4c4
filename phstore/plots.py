"""Figures for people who would rather look than read (matplotlib, written to PNG)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import xarray as xr

from phstore.metrics import regression_metrics
from phstore.store import DONE, FeatureStore


@contextmanager
def _figure(
    path: str | Path,
    size: tuple[float, float],
    title: str,
    grid: tuple[int, int] = (1, 1),
    projection: str | None = None,
) -> Iterator[tuple]:
    """``(fig, ax)`` of a new figure (``ax`` a 2-D array of axes when ``grid`` is not 1 × 1;
    ``projection="3d"`` for 3-D axes), titled, laid out and written to ``path`` on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(
        *grid,
        figsize=size,
        dpi=120,
        squeeze=grid == (1, 1),
        layout="constrained",
        subplot_kw={"projection": projection} if projection else None,
    )
    try:
        yield fig, ax
        (ax.set_title if grid == (1, 1) else fig.suptitle)(title, fontsize=9)
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


def plot_diagram(
    pairs: dict[int, np.ndarray], path: str | Path, title: str = "", box: tuple[float, float] | None = (0.0, 8.0)
) -> Path:
    """Draw persistence diagrams (``{degree: (birth, death) rows}``, Å²) in one birth × death
    plot: a colour per degree, classes with an infinite death as triangles on the top edge, and
    ``box`` (the histogram's range) outlined."""
    from matplotlib.patches import Rectangle

    deaths = [p[np.isfinite(p[:, 1]), 1] for p in pairs.values()]
    top = max([float(d.max()) for d in deaths if len(d)] + [box[1] if box else 1.0]) * 1.05
    with _figure(path, (5, 4.6), title) as (fig, ax):
        ax.plot([0, top], [0, top], color="0.5", lw=0.8)
        if box:
            ax.add_patch(
                Rectangle((box[0], box[0]), box[1] - box[0], box[1] - box[0], fill=False, ls="--", lw=0.8, color="0.4")
            )
        for (degree, p), colour in zip(sorted(pairs.items()), ("tab:blue", "tab:orange", "tab:green", "tab:red")):
            inf = ~np.isfinite(p[:, 1])
            ax.scatter(p[~inf, 0], p[~inf, 1], s=6, alpha=0.6, color=colour, label=f"H{degree} ({int((~inf).sum())})")
            if inf.any():
                ax.scatter(
                    p[inf, 0],
                    np.full(int(inf.sum()), top),
                    marker="^",
                    s=24,
                    color=colour,
                    label=f"H{degree} never killed ({int(inf.sum())})",
                )
        ax.set_xlim(0, top)
        ax.set_ylim(0, top * 1.03)
        ax.set_xlabel("birth (Å²)")
        ax.set_ylabel("death (Å²)")
        ax.legend(fontsize=7, loc="lower right")
    return Path(path)


def plot_mean_ph_histogram(store: FeatureStore, selection: xr.Dataset, path: str | Path) -> int:
    """Draw the mean PH histogram of the finished snapshots of ``selection`` (from
    :meth:`FeatureStore.sel`) to ``path``; return how many snapshots it averages."""
    names = [v for v in selection.data_vars if v.startswith("ph") and v.endswith("_histogram")]
    if not names or not selection.sizes["snapshot"]:
        raise ValueError("the selection has no PH features; run `phstore featurize ph` first")
    var = names[0]
    group = selection[var].attrs["descriptor_group"]
    low, high = store.descriptor_groups(selection.attrs["collection"])[group]["params"]["range"]
    done = selection[f"{var.removesuffix('_histogram')}_status"].values == DONE
    mean = selection[var].values[done].mean(axis=0)
    plot_histogram(mean, (low, high), path, f"mean H1 histogram of {int(done.sum())} snapshots ({var})")
    return int(done.sum())


def plot_parity(
    target: np.ndarray, predicted: np.ndarray, sets: dict[str, np.ndarray], path: str | Path, title: str = ""
) -> Path:
    """Predicted vs reference energy per atom (eV/atom) of each named set of positions (e.g.
    train blue and test red as in the seed paper's Figs. 2 and 3), each set's RMSE (meV/atom)
    in the legend."""
    with _figure(path, (4.6, 4.4), title) as (_, ax):
        for (label, idx), colour in zip(sets.items(), ("tab:blue", "tab:red", "tab:green", "tab:orange")):
            rmse = regression_metrics(target[idx], predicted[idx])["rmse_mev"]
            ax.scatter(
                target[idx], predicted[idx], s=8, alpha=0.6, color=colour, label=f"{label} (RMSE {rmse:.1f} meV/atom)"
            )
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


def plot_maps(
    panels: list[tuple[str, np.ndarray]], density: np.ndarray, energy: np.ndarray, path: str | Path, title: str = ""
) -> Path:
    """One column per ``(label, 2-D coordinates)``: coloured by density (g/cm³) in the first
    row and by energy per atom (eV/atom) in the second (seed paper Figs. 4 and 5); snapshots
    without an energy are grey."""
    with _figure(path, (3.2 * len(panels) + 0.8, 6.2), title, grid=(2, len(panels))) as (fig, axes):
        for row, (values, label, cmap) in enumerate(
            ((density, "density (g/cm³)", "viridis"), (energy, "energy (eV/atom)", "coolwarm"))
        ):
            for col, (name, xy) in enumerate(panels):
                ax = axes[row, col]
                known = np.isfinite(values)  # unlabelled snapshots (no energy): grey
                ax.scatter(xy[~known, 0], xy[~known, 1], c="0.75", s=4)
                points = ax.scatter(xy[known, 0], xy[known, 1], c=values[known], s=4, cmap=cmap)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(name, fontsize=9)
            fig.colorbar(points, ax=axes[row, :].tolist(), label=label, shrink=0.9)
    return Path(path)


def plot_coefficient_map(
    values: np.ndarray,
    extent: tuple[float, float],
    path: str | Path,
    title: str = "",
    label: str = "coefficient (eV/atom per s.d. of the bin)",
) -> Path:
    """Values ``[birth bin, death bin]`` on the birth × death grid (Å²), diverging colours
    centred at 0, e.g. a Ridge model's coefficients (seed paper Fig. 6a); ``label`` names them."""
    from matplotlib.colors import TwoSlopeNorm

    with _figure(path, (5, 4.2), title) as (fig, ax):
        span = float(np.abs(values).max()) or 1.0
        image = ax.imshow(
            values.T, origin="lower", extent=(*extent, *extent), cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -span, span)
        )
        ax.plot(extent, extent, color="0.5", lw=0.8)
        ax.set_xlabel("birth (Å²)")
        ax.set_ylabel("death (Å²)")
        fig.colorbar(image, ax=ax, label=label)
    return Path(path)


def plot_bond_histograms(
    lengths: dict[str, np.ndarray], angles: dict[str, np.ndarray], path: str | Path, title: str = ""
) -> Path:
    """Bond-length (Å) and bond-angle (degrees) distributions of the high- and low-energy
    regions (seed paper Fig. 6c, d), as densities."""
    colours = {"high": "tab:red", "low": "tab:blue"}
    with _figure(path, (8, 3.4), title, grid=(1, 2)) as (_, axes):
        for ax, data, label, bins in (
            (axes[0, 0], lengths, "bond length (Å)", np.linspace(1.1, 1.9, 41)),
            (axes[0, 1], angles, "bond angle (degrees)", np.linspace(40, 180, 71)),
        ):
            for side, values in data.items():
                if len(values):
                    ax.hist(
                        values,
                        bins=bins,
                        density=True,
                        histtype="step",
                        lw=1.5,
                        color=colours.get(side),
                        label=f"{side} ({len(values)})",
                    )
            ax.set_xlabel(label)
            ax.set_ylabel("density")
            ax.legend(fontsize=8)
    return Path(path)


def plot_regions(atoms, tags: np.ndarray, path: str | Path, title: str = "") -> Path:
    """One snapshot in 3-D, atoms coloured by region: high red, low blue, both purple, none grey
    (seed paper Fig. 6b)."""
    colours = np.array(["0.75", "tab:red", "tab:blue", "tab:purple"], dtype=object)[tags]
    with _figure(path, (5, 5), title, projection="3d") as (_, ax):
        xyz = atoms.get_positions(wrap=True)
        ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=list(colours), s=np.where(tags > 0, 28, 8), depthshade=True)
        for axis in "xyz":
            getattr(ax, f"set_{axis}label")(f"{axis} (Å)")
    return Path(path)
