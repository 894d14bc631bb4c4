"""The Ridge coefficients on the birth–death grid of the PD histogram (seed paper Fig. 6a).

phstore's Ridge is fitted on z-scored histogram bins, so a coefficient is the change of the
energy per atom (eV/atom) per standard deviation of its bin in the training set: bins with
large positive coefficients are where pairs make a structure's energy high, large negative
ones where they make it low. The inverse analysis (:mod:`phstore.analysis.inverse`) selects
birth–death pairs by thresholds on these same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phstore.modeldir import ModelDir, ModelDirError, load_model_dir
from phstore.ph.vectorize import histogram_bins
from phstore.plots import plot_coefficient_map


@dataclass(frozen=True)
class CoefficientGrid:
    """Coefficients ``values[birth bin, death bin]`` (eV/atom per standard deviation) over
    ``extent = (low, high)`` squared radii, Å², on both axes."""

    values: np.ndarray
    extent: tuple[float, float]

    def bin_of(self, births: np.ndarray, deaths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bin indices of birth–death pairs, as PH's histogram bins them, and whether each pair
        falls on the grid."""
        return histogram_bins(births, deaths, self.values.shape[0], self.extent)

    def extreme_thresholds(self, high_cells: int, low_cells: int) -> tuple[float, float]:
        """Thresholds ``(high, low)`` (eV/atom per s.d.) that select the ``high_cells`` cells
        with the largest coefficients (above ``high``) and the ``low_cells`` with the smallest
        (below ``low``), and the cells tied with the last one taken: each threshold half-way
        to the next distinct value. Counts hold on any model's scale, where absolute thresholds
        (the paper's) may select almost every cell or none."""
        ordered, distinct = np.sort(self.values.ravel()), np.unique(self.values)
        if min(high_cells, low_cells) >= 1 and high_cells + low_cells <= len(ordered):
            last_high, last_low = ordered[-high_cells], ordered[low_cells - 1]
            below, above = distinct[distinct < last_high], distinct[distinct > last_low]
            if len(below) and len(above) and last_low < last_high:
                return float((last_high + below[-1]) / 2), float((last_low + above[0]) / 2)
        raise ValueError(
            f"the grid has {len(ordered)} cells: give 1 or more on each side, {len(ordered)} at most in all, "
            f"with the two sides apart (not tied), not {high_cells} high and {low_cells} low"
        )


def coefficient_grid(model: ModelDir) -> CoefficientGrid:
    """The coefficients of a Ridge model trained on the PH histogram alone, on its grid."""
    if model.kind != "ridge" or model.config["features"] != [["ph", "histogram"]]:
        raise ModelDirError(
            f"{model.path} is a {model.kind} model on {model.config.get('features')}; the coefficient "
            "map needs a Ridge model on the PH histogram alone (`phstore train ridge`)"
        )
    coef = model.state()["coef"]
    shape = tuple(model.config["feature_shapes"][0])
    low, high = model.config["descriptor_params"][0]["range"]
    return CoefficientGrid(coef.reshape(shape), (float(low), float(high)))


def ridge_map(model_path: str | Path, out: str | Path | None = None) -> tuple[CoefficientGrid, Path]:
    """Draw the coefficient map of the Ridge model at ``model_path`` (default:
    ``ridge-map.png`` in the model directory)."""
    model = load_model_dir(model_path, "ridge")
    grid = coefficient_grid(model)
    path = Path(out) if out else model.path / "ridge-map.png"
    plot_coefficient_map(grid.values, grid.extent, path, f"Ridge coefficients ({model.key})")
    return grid, path
