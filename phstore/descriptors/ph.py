"""Persistent homology of the periodic alpha filtration and its normalised histogram.

Seed paper §2.2: first-homology persistence diagram of the periodic alpha filtration of each
cell as it is, turned into a 128×128 histogram on [0, 8]×[0, 8] (birth × death, HomCloud's
*squared radius* units, Å²) and normalised to a probability distribution. Diagrams of degree 0,
1 and 2 are kept losslessly in the group's records.

Two engines compute the diagrams:

- ``native`` (default): phstore's own engine (:mod:`phstore.ph`), in the worker process, for
  any periodic cell as it is (triclinic, hexagonal, a few atoms). With ``truncate`` the
  filtration stops at the histogram's upper bound: every pair that dies at or below it is exact,
  and classes still alive there are stored with ``death = inf`` like essential ones.
- ``homcloud``: HomCloud in an isolated child (:mod:`phstore.isolation`), for cross-checks and
  the inverse analysis. It takes orthorhombic boxes only, replicated into near-cubes it accepts
  (:func:`phstore.ph.homcloud.supercell`); "too few points" or an abort grows the near-cube and
  retries, up to ``max_atoms``.

The replication factor (``supercell``) and whether the frame was degenerate and computed with a
seeded jitter (``jittered``) are stored per snapshot.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms

from phstore.descriptors.base import Descriptor, FrameResult, radius_axis
from phstore.descriptors.params import PHExecution, PHParams
from phstore.isolation import ChildCrashed, ChildError, ChildTimeout, runner_for
from phstore.ph import Deadline, PeriodicAlphaError, homcloud, periodic_alpha_diagram
from phstore.ph.vectorize import histogram
from phstore.store import Coordinates, VariableSpec

#: Atoms closer than this (Å) make a frame fail: a duplicated atom, not a structure.
MIN_DISTANCE = 0.1


def lattice_supercell(cell: np.ndarray, min_side: float) -> tuple[int, int, int]:
    """Repetitions along each lattice vector that make every cell height ≥ ``min_side`` (Å)."""
    cell = np.asarray(cell, dtype=float)
    heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    return tuple(max(1, math.ceil(min_side / h - 1e-9)) for h in heights)  # type: ignore[return-value]


def histogram_variable(bins: int, degree: int, per_atom: bool = False) -> VariableSpec:
    """The stored persistence histogram of one degree, ``bins × bins`` on birth × death:
    normalised to sum to 1, or pairs per atom."""
    return VariableSpec(
        ("birth", "death"),
        (bins, bins),
        "float32",
        np.nan,
        units="1/atom" if per_atom else "1",
        long_name=f"H{degree} persistence pairs per atom"
        if per_atom
        else f"normalised H{degree} persistence histogram",
    )


def histogram_axes(bins: int, range_: tuple[float, float]) -> Coordinates:
    """The birth and death coordinates (bin centres, Å²) of a histogram over ``range_``."""
    return {axis: radius_axis(axis, bins, range_) for axis in ("birth", "death")}


class PH(Descriptor):
    """Periodic-alpha persistence diagrams and the normalised histogram of one degree.

    Parameters
    ----------
    params:
        :class:`PHParams` (enter the provenance key).
    time_limit:
        Seconds one frame may take before it is recorded as failed (an execution setting, not
        part of the provenance). The native engine checks it between its stages; HomCloud's
        child process is killed.
    """

    name = "ph"
    species_blind = True  # every atom is a point of one radius
    summary = "histogram"
    standardised = True  # the seed paper z-scores every bin
    record_columns = ("row", "degree", "birth", "death")

    def __init__(self, params: PHParams = PHParams(), time_limit: float = PHExecution.time_limit) -> None:
        self.params = params
        self.time_limit = time_limit

    @property
    def packages(self) -> tuple[str, ...]:  # type: ignore[override]
        """Libraries whose versions enter the provenance key: the engine's."""
        return ("phstore", "scipy", "numba") if self.params.engine == "native" else ("homcloud",)

    def variables(self, natoms: int) -> dict[str, VariableSpec]:
        return {
            "histogram": histogram_variable(self.params.bins, self.params.histogram_degree),
            "supercell": VariableSpec(("axis",), (3,), "int16", 0, long_name="repetitions of the cell along a, b, c"),
            "jittered": VariableSpec((), (), "int8", 0, long_name="positions jittered to break degeneracy"),
        }

    def coordinates(self) -> Coordinates:
        return histogram_axes(self.params.bins, self.params.range)

    def compute(self, atoms: Atoms) -> FrameResult:
        p = self.params
        if not atoms.pbc.all():
            return FrameResult.failed(
                f"not periodic in all three directions (pbc={atoms.pbc.tolist()}): the periodic alpha filtration "
                "needs a 3-periodic cell; give the frame a cell and pbc=True (with vacuum where it is not periodic)"
            )
        result = self._native(atoms) if p.engine == "native" else self._homcloud(atoms)
        if isinstance(result, str):
            return FrameResult.failed(result)
        diagram, factor, jittered = result
        closest = diagram[(diagram[:, 0] == 0) & np.isfinite(diagram[:, 2]), 2]
        if len(closest) and 2 * math.sqrt(closest.min()) < MIN_DISTANCE:
            return FrameResult.failed(f"two atoms are {2 * math.sqrt(closest.min()):.3g} Å apart: a duplicated atom?")
        try:
            hist = histogram(diagram[diagram[:, 0] == p.histogram_degree, 1:], p.bins, p.range, p.min_persistence)
        except ValueError as exc:
            return FrameResult.failed(f"degree {p.histogram_degree}: {exc}")
        return FrameResult(
            values={
                "histogram": hist.astype(np.float32),
                "supercell": np.asarray(factor, dtype=np.int16),
                "jittered": np.int8(jittered),
            },
            records=diagram[np.isin(diagram[:, 0], p.degrees)],
        )

    def _native(self, atoms: Atoms) -> tuple[np.ndarray, tuple[int, int, int], bool] | str:
        p = self.params
        factor = lattice_supercell(atoms.cell.array, p.min_side)
        frame = atoms.repeat(factor) if factor != (1, 1, 1) else atoms
        try:
            d = periodic_alpha_diagram(
                frame.positions, frame.cell.array, (0, 1, 2), max_value=p.truncated_at, time_limit=self.time_limit
            )
        except Deadline:
            return f"PH took longer than its time limit of {self.time_limit:g} s"
        except PeriodicAlphaError as exc:
            return f"PH failed: {exc}"
        return d.rows, factor, d.jittered

    def _homcloud(self, atoms: Atoms) -> tuple[np.ndarray, tuple[int, int, int], bool] | str:
        p = self.params
        lengths = homcloud.orthorhombic_lengths(atoms.cell.array)
        if lengths is None:
            return (
                "triclinic cell: HomCloud's periodic alpha filtration takes an orthorhombic box; "
                "use the native engine (engine='native'), which takes any cell"
            )
        factor = homcloud.supercell(lengths, p.min_side)
        runner = runner_for(homcloud.PRELOAD, self.time_limit)
        while True:
            points = homcloud.replicate(atoms.positions, lengths, factor)
            try:
                diagram = runner.call("phstore.ph.homcloud:persistence_diagrams", points, lengths * factor, (0, 1, 2))
                return diagram, factor, False
            except ChildTimeout as exc:
                return f"HomCloud hung (supercell {factor}): {exc}"
            except (ChildError, ChildCrashed) as exc:
                # "too few points" and aborts both come from cells too small for HomCloud's
                # 1-sheet periodic triangulation: a bigger near-cube is the measured cure.
                retry = isinstance(exc, ChildCrashed) or homcloud.TOO_FEW in str(exc)
                bigger = homcloud.grow(lengths, factor)
                if retry and len(atoms) * int(np.prod(bigger)) <= p.max_atoms:
                    factor = bigger
                    continue
                what = "aborted" if isinstance(exc, ChildCrashed) else "raised"
                return f"HomCloud {what} (supercell {factor}): {exc}"
