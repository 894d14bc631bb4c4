"""Regression metrics in the units the field reports: meV/atom."""

from __future__ import annotations

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE and MAE (meV/atom) and R² of predicted energies per atom given in eV/atom."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    err = y_pred - y_true
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "rmse_mev": float(np.sqrt(np.mean(err**2)) * 1000),
        "mae_mev": float(np.mean(np.abs(err)) * 1000),
        "r2": float(1 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
        "n": int(len(y_true)),
    }
