"""The one table of model kinds: what ``phstore train KIND`` offers, with each kind's help, its
parameter dataclass holding its defaults (the paper's), and where its implementation lives.

Light (it imports only the parameter dataclasses), so the command line lists every kind and its
options without importing torch; :meth:`ModelKind.build` imports the implementation. A new
kind is a module with a :class:`~phstore.training.model.Model` subclass and one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from phstore.training.params import NeuralConfig, RidgeConfig, SchNetConfig


@dataclass(frozen=True)
class ModelKind:
    """A kind of model: its name, one line of help, its parameters with their defaults
    (``preset``) and its implementation (``"module:Class"``)."""

    name: str
    help: str
    preset: Any
    implementation: str

    def model_class(self) -> type:
        module, name = self.implementation.split(":")
        return getattr(importlib.import_module(module), name)

    def build(self, params: Any = None) -> Any:
        """An unfitted model with ``params`` (default: the preset)."""
        return self.model_class()(self.preset if params is None else params)


MODELS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind(
            "ridge",
            "Ridge regression on the PH histograms (seed paper §2.5; alpha 200)",
            RidgeConfig(),
            "phstore.training.ridge:RidgeModel",
        ),
        ModelKind(
            "soap-ridge",
            "Ridge regression on atom-mean SOAP (a linear baseline; alpha 200)",
            RidgeConfig(features=(("soap", "mean"),)),
            "phstore.training.ridge:RidgeModel",
        ),
        ModelKind(
            "cnn", "the paper's CNN on the PH histograms (§2.6)", NeuralConfig.cnn(), "phstore.training.neural:Network"
        ),
        ModelKind(
            "soap-mlp",
            "MLP (40, 40) on atom-mean SOAP (§2.7)",
            NeuralConfig.soap_mlp(),
            "phstore.training.neural:Network",
        ),
        ModelKind(
            "ph-soap",
            "the SOAP MLP on the PH histogram and SOAP concatenated",
            NeuralConfig.ph_soap(),
            "phstore.training.neural:Network",
        ),
        ModelKind(
            "schnet",
            "SchNet on positions and energies (§2.4)",
            SchNetConfig(),
            "phstore.training.schnet:SchNetModel",
        ),
    )
}


def model_kind(name: str) -> ModelKind:
    """The kind called ``name``, or a ValueError listing the kinds there are."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model kind {name!r}; choose one of {list(MODELS)}") from None
