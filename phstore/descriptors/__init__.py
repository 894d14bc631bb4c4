"""Descriptors: one base class (:mod:`.base`) and one module per descriptor."""

from phstore.descriptors.base import Descriptor, FrameResult
from phstore.descriptors.diagram_features import (DiagramHistogram, DiagramHistogramParams, PersistenceImage,
                                                  PersistenceImageParams)
from phstore.descriptors.ph import PH, PHParams
from phstore.descriptors.schnet import SchNet, SchNetParams
from phstore.descriptors.soap import SOAP, SOAPParams

#: Descriptors by their CLI name.
REGISTRY: dict[str, type[Descriptor]] = {d.name: d for d in (PH, SOAP, SchNet, PersistenceImage, DiagramHistogram)}

__all__ = ["Descriptor", "DiagramHistogram", "DiagramHistogramParams", "FrameResult", "PH", "PHParams",
           "PersistenceImage", "PersistenceImageParams", "REGISTRY", "SOAP", "SOAPParams", "SchNet", "SchNetParams"]
