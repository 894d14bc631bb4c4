"""The shape every model has: scikit-learn's estimator, on rows of the store.

``__init__`` stores the parameter dataclass (``params``) and does nothing else; :meth:`Model.fit`
sets the learned attributes, whose names end in ``_``; :meth:`Model.predict` gives energies per
atom (eV/atom); :meth:`Model.state` and :meth:`Model.load` turn the learned attributes into plain
arrays and back (a model directory's ``weights.npz``). Models read their inputs from
:class:`~phstore.features.Rows`: stored features, or positions when ``features`` is empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from phstore.features import Rows
from phstore.modeldir import NET, load_module, module_state
from phstore.params import Feature
from phstore.training.checkpoint import Checkpoint


class Model:
    """A model of the energy per atom; subclasses implement :meth:`fit` and :meth:`predict`."""

    #: Libraries whose versions the model directory records.
    packages: tuple[str, ...] = ()

    def __init__(self, params: Any) -> None:
        self.params = params

    @property
    def features(self) -> tuple[Feature, ...]:
        """The stored features the model reads (none: it reads positions)."""
        return tuple(getattr(self.params, "features", ()))

    def fit(
        self,
        X: Rows,
        y: np.ndarray,
        eval_set: tuple[Rows, np.ndarray] | None = None,
        seed: int = 0,
        progress: bool = False,
        checkpoint: Checkpoint | None = None,
    ) -> "Model":
        """Learn from rows ``X`` and their energies per atom ``y`` (eV/atom); ``eval_set`` is
        scored along the way by models that keep a learning curve (``history_``); ``seed``
        seeds whatever is random; models trained in epochs save their state to ``checkpoint``
        as they go and resume from it. Returns the model."""
        raise NotImplementedError

    def predict(self, X: Rows, progress: bool = False) -> np.ndarray:
        """Energies per atom (eV/atom) of rows ``X``; a progress bar if ``progress`` (networks,
        whose predictions of a whole collection take minutes on a CPU)."""
        raise NotImplementedError

    def evaluate(self, X: Rows, progress: bool = False) -> tuple[np.ndarray, dict[str, float]]:
        """:meth:`predict` of rows ``X`` and the metrics beyond those of the energy that the same
        pass gives (a potential's forces, when the rows have them); none by default."""
        return self.predict(X, progress), {}

    def network(self, inputs: dict[str, Any]) -> Any:
        """A torch model's untrained module (its learned ``net_``) for ``inputs`` (what it reads,
        :func:`~phstore.features.feature_config`); models without one do not override this."""
        raise NotImplementedError(f"{type(self).__name__} has no network")

    def state(self) -> dict[str, np.ndarray]:
        """The learned attributes as plain arrays (names without the trailing ``_``; a network's
        tensors as ``net.<name>``)."""
        arrays = {
            k[:-1]: np.asarray(v)
            for k, v in vars(self).items()
            if k.endswith("_") and isinstance(v, (np.ndarray, np.number, int, float))
        }
        if hasattr(self, "net_"):
            arrays |= module_state(self.net_)
        return arrays

    def load(self, state: dict[str, np.ndarray], inputs: dict[str, Any]) -> "Model":
        """Set the learned attributes from :meth:`state`'s arrays (``inputs``: what the model
        read when it was fitted). Returns the model."""
        for k, v in state.items():
            if not k.startswith(NET):
                setattr(self, f"{k}_", v)
        if any(k.startswith(NET) for k in state):
            self.net_ = load_module(self.network(inputs), state)
        return self
