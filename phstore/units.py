"""Unit conversions shared by generation, ingest and tests (masses in u, lengths in Å)."""

from __future__ import annotations

GRAMS_PER_U = 1.66053906660e-24
"""1 u in g."""
CM3_PER_A3 = 1e-24
"""1 Å³ in cm³."""
CARBON_MASS_U = 12.011
"""Carbon atomic mass (u), as in LAMMPS' ``mass`` command and ASE."""


def density_gcc(mass_u: float, volume_a3: float) -> float:
    """Mass density (g/cm³) of ``mass_u`` u in ``volume_a3`` Å³."""
    return mass_u * GRAMS_PER_U / (volume_a3 * CM3_PER_A3)
