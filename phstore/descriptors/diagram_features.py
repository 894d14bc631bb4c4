"""Descriptors made from the PH diagrams already in the store: no PH is computed again.

:class:`PersistenceImage` (``pimage``) and :class:`DiagramHistogram` (``phist``: the PH
histogram with other bins, range or threshold) read the diagrams of one PH variant (named by its
parameters, ``ph``) chunk by chunk and store their vectors in a group of their own, whose key
covers their parameters and the PH variant's. Every PH model takes them (``phstore train
--ph-features pimage``). Called on a frame directly (:meth:`compute`), they compute its PH first.

A truncated PH variant (the default) holds exact pairs up to its upper bound only, so these
descriptors refuse parameters that reach beyond it.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Sequence

import numpy as np
from ase import Atoms

from phstore.descriptors.base import Descriptor, FrameResult, radius_axis
from phstore.descriptors.params import DiagramHistogramParams, PersistenceImageParams
from phstore.descriptors.ph import PH, histogram_axes, histogram_variable
from phstore.ph.vectorize import histogram, persistence_image
from phstore.store import DONE, PENDING, Coordinates, FeatureStore, VariableSpec


class DiagramFeature(Descriptor):
    """Base class: a vector of each snapshot's stored diagram of one degree.

    Inputs (:meth:`inputs`) are the stored diagrams; :meth:`compute_batch` also takes frames,
    whose PH it computes first. Subclasses set ``name``, ``summary`` and implement
    :meth:`_vector` (one degree's ``(birth, death)`` pairs → the vector) and :meth:`variables`.
    """

    standardised = True
    species_blind = True  # vectors of PH diagrams

    def __init__(self, params) -> None:
        if params.degree not in params.ph.degrees:
            raise ValueError(f"the PH variant stores degrees {params.ph.degrees}, not {params.degree}")
        if params.highest_death > params.ph.truncated_at:
            raise ValueError(
                f"{self.name} reaches deaths up to {params.highest_death:g} Å², but the PH diagrams are truncated at "
                f"{params.ph.truncated_at:g} Å²; narrow its range or use PH computed with truncate=False "
                "(--no-truncate)"
            )
        self.params = params

    @property
    def source(self) -> PH:
        """The PH variant whose diagrams are read."""
        return PH(self.params.ph)

    @property
    def packages(self) -> tuple[str, ...]:  # type: ignore[override]
        """The libraries that made the diagrams (this vector is numpy and scipy only)."""
        return self.source.packages

    def vectorize(self, diagram: np.ndarray) -> FrameResult:
        """The vector of one snapshot's diagram (rows ``degree, birth, death``)."""
        try:
            return FrameResult(values={self.summary: self._vector(diagram).astype(np.float32)})
        except ValueError as exc:
            return FrameResult.failed(str(exc))

    def pairs(self, diagram: np.ndarray) -> np.ndarray:
        """The ``(birth, death)`` pairs of the chosen degree of a diagram."""
        return diagram[diagram[:, 0] == self.params.degree, 1:]

    @abstractmethod
    def _vector(self, diagram: np.ndarray) -> np.ndarray:
        """The vector of a diagram (rows ``degree, birth, death``); ValueError when there is
        nothing to make it of."""

    def compute(self, atoms: Atoms) -> FrameResult:
        res = self.source.compute(atoms)
        return res if res.error is not None else self.vectorize(res.records)

    def compute_batch(self, frames: Sequence[Atoms | np.ndarray | FrameResult]) -> list[FrameResult]:
        """Frames (PH computed first), stored diagrams, or the failures :meth:`inputs` passed on."""
        return [
            f if isinstance(f, FrameResult) else self.compute(f) if isinstance(f, Atoms) else self.vectorize(f)
            for f in frames
        ]

    def check_inputs(self, store: FeatureStore, collection: str) -> None:
        group = self.source.group
        if group not in store.descriptor_groups(collection):
            raise ValueError(
                f"{collection} has no {group} diagrams for {self.name}; run `phstore featurize "
                "ph` with the same PH options (the --ph-* options here) first"
            )
        pending = int((store.status(collection, group) == PENDING).sum())
        if pending:
            raise ValueError(
                f"{collection}: {pending} snapshots have no {group} diagram yet; run `phstore featurize "
                "ph` with the same PH options (the --ph-* options here) first"
            )

    def inputs(self, store: FeatureStore, collection: str, rows: slice) -> list[np.ndarray | FrameResult]:
        """The stored diagram of every row (a failure for rows whose PH failed)."""
        group = self.source.group
        state = store.read_rows(collection, group, rows, ["status", "error"])
        return [
            diagram if status == DONE else FrameResult.failed(f"no PH diagram: {error}")
            for status, error, diagram in zip(
                state["status"], state["error"], store.row_records(collection, group, rows)
            )
        ]


class PersistenceImage(DiagramFeature):
    """Persistence image of the stored diagrams (``pimage``; Adams et al. 2017)."""

    name = "pimage"
    summary = "image"
    standardised = False  # see variables(): one scale for the whole image

    def __init__(self, params: PersistenceImageParams = PersistenceImageParams()) -> None:
        super().__init__(params)

    def variables(self, natoms: int) -> dict[str, VariableSpec]:
        # Models scale the image as a whole: its pixels share one unit, and far from every pair
        # they hold only Gaussian tails (down to 1e-25) that per-pixel z-scores blow up (Ridge on
        # the real 64-atom frames: test RMSE 9,000 to 6e14 meV/atom, 150-172 with one scale).
        b = self.params.bins
        return {
            "image": VariableSpec(
                ("birth", "persistence"),
                (b, b),
                "float32",
                np.nan,
                scaling="block",
                units="1",
                long_name=f"H{self.params.degree} persistence image",
            )
        }

    def coordinates(self) -> Coordinates:
        p = self.params
        return {
            "birth": radius_axis("birth", p.bins, p.birth_range),
            "persistence": radius_axis("persistence", p.bins, p.persistence_range),
        }

    def _vector(self, diagram: np.ndarray) -> np.ndarray:
        p = self.params
        return persistence_image(
            self.pairs(diagram), p.bins, p.birth_range, p.persistence_range, p.sigma, p.min_persistence
        )


class DiagramHistogram(DiagramFeature):
    """Histogram of the stored diagrams (``phist``), with its own bins, range and normalisation.

    ``normalise="atom"`` divides the counts by the number of atoms instead of the number of
    pairs: the seed paper's probability histogram forgets how many pairs a frame has, which
    follows its energy closely (the 216-atom Tersoff frames: correlation 0.90-0.97 within each
    density; ``results/paper.md``). The atoms are counted as the diagram's degree-0 pairs (one
    per point of the filtration; with HomCloud's supercells both counts grow alike).
    """

    name = "phist"
    summary = "histogram"

    def __init__(self, params: DiagramHistogramParams = DiagramHistogramParams()) -> None:
        super().__init__(params)
        if params.normalise == "atom" and 0 not in params.ph.degrees:
            raise ValueError(
                f"a histogram per atom counts the atoms as degree-0 pairs, but the PH variant stores degrees "
                f"{params.ph.degrees}; compute PH with degree 0 (--ph-degrees 0 1 2) or use --normalise probability"
            )

    def variables(self, natoms: int) -> dict[str, VariableSpec]:
        p = self.params
        return {"histogram": histogram_variable(p.bins, p.degree, per_atom=p.normalise == "atom")}

    def coordinates(self) -> Coordinates:
        return histogram_axes(self.params.bins, self.params.range)

    def _vector(self, diagram: np.ndarray) -> np.ndarray:
        p = self.params
        atoms = int((diagram[:, 0] == 0).sum()) if p.normalise == "atom" else None
        return histogram(self.pairs(diagram), p.bins, p.range, p.min_persistence, atoms)
