"""Figures for people who would rather look than read (matplotlib, written to PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_histogram(hist: np.ndarray, extent: tuple[float, float], path: str | Path, title: str = "") -> Path:
    """Draw a birth × death histogram (probability per bin, log colour scale) to ``path``.

    ``extent`` is the ``(low, high)`` range of both axes in Å² (squared radii).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    masked = np.ma.masked_less_equal(hist, 0)
    fig, ax = plt.subplots(figsize=(5, 4.2), dpi=120)
    image = ax.imshow(masked.T, origin="lower", extent=(*extent, *extent), norm=LogNorm(), cmap="viridis")
    ax.plot(extent, extent, color="0.5", lw=0.8)
    ax.set_xlabel("birth (Å²)")
    ax.set_ylabel("death (Å²)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="probability per bin")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
