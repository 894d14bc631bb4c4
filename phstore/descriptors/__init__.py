"""Descriptors: one base class (:mod:`.base`) and one module per descriptor."""

from phstore.descriptors.base import Descriptor, FrameResult
from phstore.descriptors.ph import PH, PHParams

#: Descriptors by their CLI name.
REGISTRY: dict[str, type[Descriptor]] = {PH.name: PH}

__all__ = ["Descriptor", "FrameResult", "PH", "PHParams", "REGISTRY"]
