"""What every ``phstore`` command is, and what commands share.

A command is one object: its words (``featurize ph``), its options, ``run`` (the work, through
the Python API) and ``done`` (whether its result is already there: the pipeline's skip check,
beside the run it checks). The command line and the pipeline runner both drive commands; neither
knows the other.

Commands import the API they drive inside ``run`` and ``done``, not at the top: building the
parser (``phstore --help``) must not import Dask, xarray, numba or torch (2-3 s).
"""

from __future__ import annotations

import argparse
from typing import Any

from phstore.cluster_options import ClusterOptions
from phstore.commands.options import Option, options_of, params_from
from phstore.errors import PhstoreError
from phstore.params import checked

#: Exit statuses: all done; an error (nothing or not everything done); finished, but some
#: frames were rejected or failed (reported on stderr; the rest is stored).
OK, ERROR, INCOMPLETE = 0, 1, 3


class CommandError(PhstoreError):
    """A command cannot run as asked; the message says what to do instead."""


class Command:
    """One ``phstore`` command. Subclasses set ``words`` and ``help`` and implement
    :meth:`options` and :meth:`run`; commands whose result can be found implement :meth:`done`."""

    words: tuple[str, ...] = ()
    help: str = ""

    @property
    def name(self) -> str:
        return " ".join(self.words)

    def options(self) -> list[Option]:
        return []

    def run(self, args: argparse.Namespace) -> int:
        """Do the work; return an exit status (:data:`OK`, :data:`ERROR`, :data:`INCOMPLETE`)."""
        raise NotImplementedError

    def done(self, args: argparse.Namespace) -> bool:
        """Whether the result is already there (reports never are: they always run)."""
        return False


STORE = Option("store", "store directory", required=True)
QUIET = Option("quiet", "no progress bars", action="flag")

#: The options of every command that runs work on Dask workers: the fields of
#: :class:`~phstore.cluster_options.ClusterOptions` (``kind`` is ``--cluster``).
CLUSTER_OPTIONS = options_of(
    ClusterOptions,
    group="where the work runs (each falls back to Dask config phstore.cluster.*; see deploy/)",
    rename={"kind": "cluster"},
)


def cluster_options(args: argparse.Namespace) -> ClusterOptions:
    """The cluster options' values."""
    return params_from(ClusterOptions, args, rename={"kind": "cluster"})


def parse_indices(text: str) -> slice | list[int]:
    """``10:50`` → slice(10, 50); ``10:`` → slice(10, None); ``3,7,9`` → [3, 7, 9]."""
    try:
        if ":" in text:
            lo, _, hi = text.partition(":")
            return slice(int(lo) if lo else None, int(hi) if hi else None)
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise CommandError(f"{text!r} is not a range START:STOP (either may be left out) or a list 1,2,3") from None


#: The options that select snapshots of a collection by their keys and labels
#: (:meth:`~phstore.store.FeatureStore.select`); :func:`select_rows` reads them.
SELECTION = [
    Option(
        "density",
        "densities (each within --density-tol) or a range LOW:HIGH (either may be left out); g/cm³",
        nargs="+",
    ),
    Option("density_tol", "how far a density may be from one asked for (g/cm³, default 0.005)", checked(float, low=0)),
    Option("trajectory", "trajectory names", nargs="+"),
    Option("dataset", "dataset names (the origin of the energies)", nargs="+"),
    Option("config_type", "config_type labels (e.g. bulk_amo)", nargs="+"),
    Option("frames", "frame indices within their trajectories, START:STOP or 1,2,3"),
    Option(
        "where",
        "LABEL=NAME: snapshots whose string label (a frames column the sources carried, e.g. process=hold_5000K) "
        "is NAME or matches it as a shell pattern (repeatable)",
        action="append",
    ),
]


def density_criterion(words: list[str] | None) -> float | list[float] | slice | None:
    """``--density`` as :meth:`~phstore.store.FeatureStore.select` takes it: ``2.0:2.5`` (a
    range, either end open) or one or more densities."""
    if not words:
        return None
    try:
        if len(words) == 1 and ":" in words[0]:
            low, _, high = words[0].partition(":")
            return slice(float(low) if low else None, float(high) if high else None)
        return [float(w) for w in words]
    except ValueError:
        raise CommandError(f"--density takes densities (2.4 3.0) or a range LOW:HIGH, not {' '.join(words)}") from None


def selects(args: argparse.Namespace) -> bool:
    """Whether any of the :data:`SELECTION` options was given."""
    return any(getattr(args, o.name) is not None for o in SELECTION if o.name != "density_tol")


def select_rows(store: Any, args: argparse.Namespace) -> tuple[str, Any]:
    """The collection (``args.collection``) and the indices of its snapshots that the
    :data:`SELECTION` options select (all when none is given)."""
    return store.select(
        args.collection,
        density=density_criterion(args.density),
        trajectory=args.trajectory,
        dataset=args.dataset,
        config_type=args.config_type,
        frames=parse_indices(args.frames) if args.frames else None,
        where=label_criteria(args.where),
        **({"density_tol": args.density_tol} if args.density_tol is not None else {}),
    )


def label_criteria(words: list[str] | None) -> dict[str, list[str]] | None:
    """``--where`` as :meth:`~phstore.store.FeatureStore.select` takes it: ``{label: [names]}``
    (a label given several times matches any of its names)."""
    if not words:
        return None
    criteria: dict[str, list[str]] = {}
    for word in words:
        label, sep, name = word.partition("=")
        if not sep or not label or not name:
            raise CommandError(f"--where takes LABEL=NAME (e.g. process=hold_5000K), not {word!r}")
        criteria.setdefault(label, []).append(name)
    return criteria
