"""Fixed-size vectors of persistence diagrams: the normalised histogram (seed paper §2.2) and the
persistence image (Adams et al., JMLR 18, 2017). Pairs are ``(birth, death)`` rows in squared
radii, Å²; pairs with an infinite death are left out.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr


def _finite(pairs: np.ndarray, min_persistence: float) -> np.ndarray:
    pairs = pairs[np.isfinite(pairs[:, 1])]
    return pairs[pairs[:, 1] - pairs[:, 0] > min_persistence]


def bin_centres(bins: int, range_: tuple[float, float]) -> np.ndarray:
    """Centres of ``bins`` equal bins over ``range_``: the axes of histograms and images (Å²)."""
    edges = np.linspace(range_[0], range_[1], bins + 1)
    return (edges[:-1] + edges[1:]) / 2


def histogram_bins(
    births: np.ndarray, deaths: np.ndarray, bins: int, range_: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The histogram's bin (birth index, death index) of each pair and whether it falls on the
    grid: ``bins`` equal bins over ``range_`` on both axes, each closed below and open above
    except the last, closed on both sides (numpy's ``histogram2d``)."""
    edges = np.linspace(range_[0], range_[1], bins + 1)

    def index(x: np.ndarray) -> np.ndarray:
        i = np.searchsorted(edges, x, side="right") - 1
        i[x == edges[-1]] = bins - 1
        return np.clip(i, 0, bins - 1)

    inside = (births >= edges[0]) & (births <= edges[-1]) & (deaths >= edges[0]) & (deaths <= edges[-1])
    return index(births), index(deaths), inside


def histogram(
    pairs: np.ndarray,
    bins: int,
    range_: tuple[float, float],
    min_persistence: float = 0.0,
    atoms: int | None = None,
) -> np.ndarray:
    """``bins × bins`` histogram (birth × death, :func:`histogram_bins`) over ``range_`` on both
    axes of the finite pairs with persistence above ``min_persistence`` (Å²), normalised to sum
    to 1, or, given the number of ``atoms``, divided by it (pairs per atom).

    Raises ValueError when no pair falls in the range.
    """
    pairs = _finite(pairs, min_persistence)
    ib, idb, inside = histogram_bins(pairs[:, 0], pairs[:, 1], bins, range_)
    hist = np.bincount(ib[inside] * bins + idb[inside], minlength=bins * bins).reshape(bins, bins).astype(float)
    total = hist.sum()
    if total == 0:
        raise ValueError(f"no finite pair in {range_}")
    return hist / (total if atoms is None else atoms)


def persistence_image(
    pairs: np.ndarray,
    bins: int,
    birth_range: tuple[float, float],
    persistence_range: tuple[float, float],
    sigma: float,
    min_persistence: float = 0.0,
) -> np.ndarray:
    """``bins × bins`` persistence image (birth × persistence) of the finite pairs with
    persistence above ``min_persistence``: each pair is a Gaussian of standard deviation
    ``sigma`` (Å²) at (birth, death − birth), weighted by its persistence over the upper bound
    of ``persistence_range`` (a linear ramp, capped at 1), integrated exactly over every pixel;
    the image is divided by the pairs' total weight (sizes of cells do not matter).

    Raises ValueError when no pair is left.
    """
    pairs = _finite(pairs, min_persistence)
    if not len(pairs):
        raise ValueError("no finite pair to make an image of")
    birth, persistence = pairs[:, 0], pairs[:, 1] - pairs[:, 0]
    weight = np.minimum(persistence / persistence_range[1], 1.0)
    bx = np.diff(ndtr((np.linspace(*birth_range, bins + 1)[None, :] - birth[:, None]) / sigma), axis=1)
    py = np.diff(ndtr((np.linspace(*persistence_range, bins + 1)[None, :] - persistence[:, None]) / sigma), axis=1)
    return (bx * weight[:, None]).T @ py / weight.sum()
