"""The descriptor contract shared by every descriptor (PH, SOAP, SchNet, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from phstore.ph.vectorize import bin_centres
from phstore.provenance import provenance
from phstore.store import Coordinates, FeatureStore, VariableSpec


@dataclass(frozen=True)
class FrameResult:
    """What a descriptor made of one frame: per-snapshot values, ragged records, or an error.

    ``records`` rows have the columns of the descriptor's ``record_columns`` after the first
    (``row``, the frame's row in its chunk, which featurize adds), sorted (by the first column,
    then the next, ...: the store keeps them in that order); ``error`` is set
    (and ``values`` is None) when the frame failed.
    """

    values: dict[str, np.ndarray] | None = None
    records: np.ndarray | None = None
    error: str | None = None

    @classmethod
    def failed(cls, reason: str) -> "FrameResult":
        return cls(error=reason)


class Descriptor(ABC):
    """Base class: ``params`` is a frozen dataclass; execution settings are not part of it.

    Subclasses set ``name``, ``packages`` (whose versions enter the provenance key),
    ``summary`` (the variable that describes a whole snapshot: what maps and models use),
    ``standardised`` (whether maps z-score it per feature), ``record_columns`` (columns of
    ragged per-frame output, if any), and implement :meth:`variables` and :meth:`compute`; one
    built for fixed species overrides :meth:`species` and fails other frames with
    :meth:`species_error`; one that does not tell species apart sets ``species_blind`` (what
    :meth:`species_note` tells users of compositions of several species).
    """

    name: ClassVar[str]
    packages: ClassVar[tuple[str, ...]]
    summary: ClassVar[str]
    standardised: ClassVar[bool] = False
    record_columns: ClassVar[tuple[str, ...]] = ()
    species_blind: ClassVar[bool] = False

    params: Any

    def species(self) -> tuple[int, ...] | None:
        """The atomic numbers the descriptor is built for (None: any); override to restrict."""
        return None

    def species_error(self, atoms: Atoms) -> str | None:
        """Why ``atoms`` cannot be described because of its species (None when it can): the
        one check every descriptor with a fixed species list makes before computing."""
        known = self.species()
        unknown = sorted(set(atoms.numbers.tolist()) - set(known)) if known is not None else []
        if not unknown:
            return None
        names = [chemical_symbols[z] for z in unknown]
        return f"species {names} are not in the {self.name} species {[chemical_symbols[z] for z in known]}"

    def species_note(self, numbers: Sequence[int]) -> str | None:
        """What describing frames of the atomic numbers ``numbers`` means, when a user must know
        it (a species-blind descriptor of several species treats them alike), else None."""
        kinds = sorted(set(int(z) for z in numbers))
        if not self.species_blind or len(kinds) < 2:
            return None
        names = "/".join(chemical_symbols[z] for z in kinds)
        return f"{self.name} does not tell species apart: its {names} atoms are all treated alike"

    def provenance(self) -> dict[str, Any]:
        """Parameters, library versions and their hash (see :mod:`phstore.provenance`)."""
        return provenance(self.name, self.params, self.packages)

    @property
    def group(self) -> str:
        """Store group of this variant: ``<name>-<provenance key>``."""
        return f"{self.name}-{self.provenance()['key']}"

    @abstractmethod
    def variables(self, natoms: int) -> dict[str, VariableSpec]:
        """Per-snapshot output arrays for frames of ``natoms`` atoms."""

    def coordinates(self) -> Coordinates:
        """Coordinates of the dimensions of :meth:`variables` that are this descriptor's own
        (a histogram's bin centres); none by default."""
        return {}

    @abstractmethod
    def compute(self, atoms: Atoms) -> FrameResult:
        """Describe one periodic frame; never raises for a bad frame, returns a failure."""

    def compute_batch(self, frames: Sequence[Any]) -> list[FrameResult]:
        """Describe many frames, as :meth:`inputs` reads them (override when a batch is cheaper
        than a loop)."""
        return [self.compute(atoms) for atoms in frames]

    def check_inputs(self, store: FeatureStore, collection: str) -> None:
        """Raise ValueError, saying what to run first, if ``collection`` cannot be described yet."""

    def inputs(self, store: FeatureStore, collection: str, rows: slice) -> list[Any]:
        """What :meth:`compute_batch` takes for the snapshots ``rows``: their frames."""
        return store.atoms(collection, rows)


def radius_axis(name: str, bins: int, range_: tuple[float, float]) -> tuple[np.ndarray, dict[str, str]]:
    """A diagram axis of ``bins`` bins over ``range_`` (Å², squared alpha radii) as a coordinate:
    the bin centres and their CF attributes."""
    return bin_centres(bins, range_), {"units": "angstrom^2", "long_name": f"{name} (squared radius), bin centre"}
