"""The parameters of every model, as frozen dataclasses (recorded in each model directory's
``model.json``).

They live apart from the models, which import the store and torch, so the command line offers
every field as an option (``phstore train cnn --help``) without importing them. A model's input
features (``features``) and network ``kind`` are set by the command that names the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from phstore.params import Feature, Parameters, param

#: Network kinds: the CNN on one 2-D feature; MLPs on their features flattened and concatenated.
NETWORKS = ("cnn", "soap-mlp", "ph-soap")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class RidgeConfig(Parameters):
    """Ridge regression (seed paper §2.5) on stored features (concatenated when several)."""

    alpha: float = param(200.0, "regularisation strength (on z-scored features)", low=0)
    features: tuple[Feature, ...] = (("ph", "histogram"),)


@dataclass(frozen=True)
class NeuralConfig(Parameters):
    """A network on stored features (concatenated when several) and how it is optimised
    (defaults: the paper's CNN)."""

    kind: str = "cnn"
    features: tuple[Feature, ...] = (("ph", "histogram"),)
    optimizer: str = param("sgd", "sgd: Nesterov momentum; adam", choices=OPTIMIZERS)
    lr: float = param(0.0015, "initial learning rate", positive=True)
    momentum: float = param(0.9, "sgd: Nesterov momentum", low=0, high=1)
    weight_decay: float = param(0.001, "L2 weight decay", low=0)
    milestones: tuple[int, ...] = param((200, 400, 800, 1200), "epochs at which the learning rate is halved", low=1)
    epochs: int = param(1600, "training epochs", low=1)
    batch_size: int = param(32, "snapshots per batch", low=1)
    hidden: tuple[int, ...] = param((64,), "hidden layer widths (the CNN: its fully connected layer)", low=1)

    @classmethod
    def cnn(cls, **overrides) -> "NeuralConfig":
        """Seed paper §2.6: 3×3 convolutions of 64, 64, 32 channels with max-pooling, two fully
        connected layers, ReLU; SGD (Nesterov 0.9, weight decay 0.001), lr 0.0015 halved at
        epochs 200, 400, 800, 1200; 1600 epochs."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def soap_mlp(cls, **overrides) -> "NeuralConfig":
        """Seed paper §2.7: atom-mean SOAP → two hidden layers of 40 → energy; Adam, lr 0.001
        halved at epochs 200, 500, 1000; 2000 epochs."""
        return dataclasses.replace(
            cls(
                kind="soap-mlp",
                features=(("soap", "mean"),),
                optimizer="adam",
                lr=0.001,
                momentum=0.0,
                weight_decay=0.0,
                milestones=(200, 500, 1000),
                epochs=2000,
                hidden=(40, 40),
            ),
            **overrides,
        )

    @classmethod
    def ph_soap(cls, **overrides) -> "NeuralConfig":
        """PH + SOAP, the combination the paper's conclusion proposes: the SOAP MLP's layers and
        optimiser on the normalised PH histogram concatenated with the atom-mean SOAP."""
        return cls.soap_mlp(**{"kind": "ph-soap", "features": (("ph", "histogram"), ("soap", "mean")), **overrides})


@dataclass(frozen=True)
class SchNetConfig(Parameters):
    """SchNet's shape (seed paper §2.4) and how it trains (the split's seed also seeds torch)."""

    n_atom_basis: int = param(100, "size of the atom basis (the embedding's width)", low=1)
    n_interactions: int = param(3, "interaction blocks", low=1)
    n_rbf: int = param(60, "Gaussians of the distance expansion", low=1)
    cutoff: float = param(5.0, "cosine cutoff radius", "Å", positive=True)
    epochs: int = param(100, "training epochs", low=1)
    batch_size: int = param(16, "snapshots per batch", low=1)
    lr: float = param(5e-4, "Adam learning rate", positive=True)
    force_weight: float = param(
        0.0, "weight of the forces' mean squared error (over their training RMS) in the loss (0: energies)", low=0
    )
