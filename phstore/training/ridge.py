"""Ridge regression of the energy per atom on stored descriptor values (seed paper §2.5).

Defaults: the normalised PH histogram (128 × 128, flattened), alpha 200, an intercept. The
features are centred and scaled with statistics of the training rows only, as their stored
variables ask (:func:`~phstore.features.feature_scales`: the histogram's bins are z-scored,
bins constant in training keep scale 1); the scaler is part of the learned state. The state is
plain arrays: a Ridge model is stored and applied without torch.
"""

from __future__ import annotations

import numpy as np

from phstore.features import Rows, feature_scales
from phstore.training.model import Model


class RidgeModel(Model):
    """scikit-learn's Ridge on the z-scored features of :class:`~phstore.training.params.RidgeConfig`.

    Learned: ``mean_`` and ``scale_`` (the scaler), ``coef_`` (eV/atom per scaled unit of each
    feature) and ``intercept_`` (eV/atom).
    """

    packages = ("scikit-learn",)

    def fit(
        self, X: Rows, y: np.ndarray, eval_set=None, seed: int = 0, progress: bool = False, checkpoint=None
    ) -> "RidgeModel":
        from sklearn.linear_model import Ridge

        x = X.features()
        self.mean_ = x.mean(axis=0)
        self.scale_ = feature_scales(x.std(axis=0), X.info)
        x -= self.mean_
        x /= self.scale_
        fitted = Ridge(alpha=self.params.alpha, fit_intercept=True).fit(x, y)
        self.coef_ = np.asarray(fitted.coef_, dtype=np.float64)
        self.intercept_ = float(fitted.intercept_)
        return self

    def predict(self, X: Rows, progress: bool = False) -> np.ndarray:
        return (X.features() - self.mean_) / self.scale_ @ self.coef_ + float(self.intercept_)
