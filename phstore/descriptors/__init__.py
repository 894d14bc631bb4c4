"""Descriptors: one base class (:mod:`.base`), their parameters (:mod:`.params`) and one module
per descriptor.

Importing this package imports the parameters only; each descriptor class is imported on first
use (PEP 562), so the command line builds its options without the store, numba or dscribe.
"""

from __future__ import annotations

import importlib
from typing import Any

from phstore.descriptors.params import DiagramHistogramParams, PersistenceImageParams, PHParams, SOAPParams

#: Where each class lives, and the descriptors by their command-line name (:data:`REGISTRY`).
_MODULES = {
    "Descriptor": "base",
    "FrameResult": "base",
    "PH": "ph",
    "SOAP": "soap",
    "SchNet": "schnet",
    "SchNetParams": "schnet",
    "PersistenceImage": "diagram_features",
    "DiagramHistogram": "diagram_features",
}
_DESCRIPTORS = ("PH", "SOAP", "SchNet", "PersistenceImage", "DiagramHistogram")


def __getattr__(name: str) -> Any:
    if name == "REGISTRY":  # descriptors by their CLI name: {"ph": PH, ...}
        classes = [__getattr__(n) for n in _DESCRIPTORS]
        return {d.name: d for d in classes}
    if name in _MODULES:
        return getattr(importlib.import_module(f"phstore.descriptors.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'phstore.descriptors' has no attribute {name!r}")


__all__ = ["DiagramHistogramParams", "PHParams", "PersistenceImageParams", "SOAPParams", "REGISTRY", *_MODULES]
