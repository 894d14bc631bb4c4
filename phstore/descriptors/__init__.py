"""Descriptors: one base class (:mod:`.base`), their parameters (:mod:`.params`), one module per
descriptor, and :data:`KINDS`, the one table of them.

Importing this package imports the parameters only; each descriptor class is imported on first
use (PEP 562), so the command line builds its options without the store, numba or dscribe. A new
descriptor is a module with a :class:`~.base.Descriptor` subclass, its parameter dataclass in
:mod:`.params`, one line in :data:`KINDS` and an entry in the contract suite.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from phstore.descriptors.params import (
    DiagramHistogramParams,
    PersistenceImageParams,
    PHExecution,
    PHParams,
    SOAPParams,
)


@dataclass(frozen=True)
class DescriptorKind:
    """A descriptor as ``phstore featurize NAME`` offers it: one line of help, its parameter
    dataclass (None: the parameters come from a trained model), its execution settings (a
    dataclass of keyword arguments that are not provenance, or None) and its class
    (``"module:Class"`` in this package)."""

    name: str
    help: str
    params: type | None
    implementation: str
    settings: type | None = None

    @property
    def class_name(self) -> str:
        return self.implementation.split(":")[1]

    def descriptor_class(self) -> type:
        module, name = self.implementation.split(":")
        return getattr(importlib.import_module(f"phstore.descriptors.{module}"), name)


_PH_VECTORS = "(no PH is recomputed; the ph_* options name the PH variant to read)"

#: Every descriptor, by its command-line name.
KINDS: dict[str, DescriptorKind] = {
    kind.name: kind
    for kind in (
        DescriptorKind(
            "ph",
            "persistence diagrams of the periodic alpha filtration and their normalised histogram (seed paper §2.2)",
            PHParams,
            "ph:PH",
            PHExecution,
        ),
        DescriptorKind(
            "soap", "SOAP of every atom and its atom-mean (dscribe; seed paper §2.3)", SOAPParams, "soap:SOAP"
        ),
        DescriptorKind(
            "pimage",
            f"persistence images of the stored PH diagrams {_PH_VECTORS}",
            PersistenceImageParams,
            "diagram_features:PersistenceImage",
        ),
        DescriptorKind(
            "phist",
            f"histograms of the stored PH diagrams with other bins, range or threshold {_PH_VECTORS}",
            DiagramHistogramParams,
            "diagram_features:DiagramHistogram",
        ),
        DescriptorKind(
            "schnet",
            "SchNet embeddings (last interaction block, per atom and atom-mean) of a model trained with "
            "`phstore train schnet`",
            None,
            "schnet:SchNet",
        ),
    )
}

#: Where the other public classes live.
_MODULES = {"Descriptor": "base", "FrameResult": "base", "SchNetParams": "schnet"} | {
    kind.class_name: kind.implementation.split(":")[0] for kind in KINDS.values()
}


def __getattr__(name: str) -> Any:
    if name == "REGISTRY":  # descriptor classes by their CLI name: {"ph": PH, ...}
        return {kind.name: kind.descriptor_class() for kind in KINDS.values()}
    if name in _MODULES:
        return getattr(importlib.import_module(f"phstore.descriptors.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'phstore.descriptors' has no attribute {name!r}")


__all__ = [
    "DiagramHistogramParams",
    "KINDS",
    "PHExecution",
    "PHParams",
    "PersistenceImageParams",
    "REGISTRY",
    "SOAPParams",
    *_MODULES,
]
