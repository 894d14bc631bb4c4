"""The parameters of every descriptor, as frozen dataclasses (all enter their provenance keys).

They live apart from the descriptors, which import the store, numba and dscribe, so the command
line offers every field as an option (``phstore featurize ph --help``) without importing them.
The SchNet descriptor's parameters come from a trained model, not from options
(:class:`phstore.descriptors.schnet.SchNetParams`). Execution settings that do not change a
result (PH's time limit) are dataclasses of their own, outside the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from phstore.params import MAX_SECONDS, Parameters, param

ENGINES = ("native", "homcloud")
#: How a histogram of diagrams is scaled: to a probability distribution, or per atom.
HISTOGRAM_NORMALISATIONS = ("probability", "atom")


@dataclass(frozen=True)
class PHParams(Parameters):
    """Parameters of the PH descriptor (seed paper §2.2: first homology, 128 × 128 on [0, 8]²).

    ``min_persistence``: on perfect crystals the filtration is degenerate and pairs of zero
    persistence come and go (HomCloud: from call to call; native: with the seeded jitter);
    amorphous frames have none. ``min_side``: the homcloud engine also replicates elongated
    boxes into near-cubes, as HomCloud needs.
    """

    engine: str = param(
        "native",
        "native: phstore's periodic alpha engine, any cell as it is; homcloud: HomCloud in a "
        "child process, orthorhombic cells replicated into near-cubes",
        choices=ENGINES,
    )
    degrees: tuple[int, ...] = param((0, 1, 2), "homology degrees whose diagrams are stored", choices=(0, 1, 2))
    histogram_degree: int = param(1, "homology degree of the histogram", choices=(0, 1, 2))
    bins: int = param(128, "histogram bins per axis", low=1)
    range: tuple[float, float] = param(
        (0.0, 8.0), "birth and death range of the histogram", "Å², squared radii", low=0, increasing=True
    )
    min_persistence: float = param(
        1e-5, "pairs with death - birth at or below this are left out of the histogram", "Å²", low=0
    )
    truncate: bool = param(
        True,
        "native engine: compute the filtration up to the histogram's upper bound only (exact "
        "for every pair dying below it; 2-3x faster at low density); pairs dying above are stored "
        "with death = inf",
    )
    min_side: float = param(
        0.0,
        "replicate the cell along its lattice vectors until every cell height is at least "
        "this (0: the cell as it is, the paper's definition)",
        "Å",
        low=0,
    )
    max_atoms: int = param(
        4096, "homcloud engine: give up growing the near-cube supercell beyond this many atoms", low=1
    )

    @property
    def truncated_at(self) -> float:
        """Where the stored diagrams end, Å²: pairs dying above it are stored with death = inf."""
        return self.range[1] if self.truncate and self.engine == "native" else math.inf


@dataclass(frozen=True)
class PHExecution(Parameters):
    """How PH runs, not what it computes (so not in its provenance key)."""

    time_limit: float = param(
        120.0, "time one frame may take before it is recorded failed", "s", positive=True, high=MAX_SECONDS
    )


@dataclass(frozen=True)
class SOAPParams(Parameters):
    """Parameters of the SOAP descriptor (defaults: seed paper §2.3, 360 features for carbon)."""

    species: tuple[str, ...] = param(("C",), "chemical symbols it is built for; a frame with another species fails")
    r_cut: float = param(4.1, "cutoff radius", "Å", low=1)
    n_max: int = param(8, "radial basis functions", low=1)
    l_max: int = param(9, "maximum degree of the spherical harmonics", low=0, high=20)
    sigma: float = param(0.16, "width of the Gaussians that smear the atomic density", "Å", positive=True)
    rbf: str = param("gto", "dscribe's radial basis", choices=("gto", "polynomial"))


@dataclass(frozen=True)
class PersistenceImageParams(Parameters):
    """Parameters of the persistence image of stored PH diagrams (Adams et al. 2017)."""

    ph: PHParams = param(PHParams(), "the PH variant whose stored diagrams are read")
    degree: int = param(1, "homology degree", choices=(0, 1, 2))
    bins: int = param(32, "pixels per axis", low=1)
    birth_range: tuple[float, float] = param((0.0, 5.0), "births of the image", "Å²", low=0, increasing=True)
    persistence_range: tuple[float, float] = param(
        (0.0, 3.0), "persistences of the image", "Å²", low=0, increasing=True
    )
    sigma: float = param(0.1, "standard deviation of each pair's Gaussian", "Å²", positive=True)
    min_persistence: float = param(1e-5, "pairs with death - birth at or below this are left out", "Å²", low=0)

    @property
    def highest_death(self) -> float:
        """The largest death the image sees, Å²."""
        return self.birth_range[1] + self.persistence_range[1]


@dataclass(frozen=True)
class DiagramHistogramParams(Parameters):
    """Parameters of a histogram of stored PH diagrams (as the PH descriptor's own, with other
    bins, range, threshold or normalisation)."""

    ph: PHParams = param(PHParams(), "the PH variant whose stored diagrams are read")
    degree: int = param(1, "homology degree", choices=(0, 1, 2))
    bins: int = param(64, "bins per axis", low=1)
    range: tuple[float, float] = param((0.0, 8.0), "birth and death range", "Å²", low=0, increasing=True)
    min_persistence: float = param(1e-5, "pairs with death - birth at or below this are left out", "Å²", low=0)
    normalise: str = param(
        "probability",
        "probability: the histogram sums to 1 (the seed paper's); atom: pairs per atom, which keeps how many "
        "pairs there are (needs degree 0 in the PH variant: its pairs count the atoms)",
        choices=HISTOGRAM_NORMALISATIONS,
    )

    @property
    def highest_death(self) -> float:
        """The largest death the histogram sees, Å²."""
        return self.range[1]
