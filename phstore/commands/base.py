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

from phstore.cluster_options import ClusterOptions
from phstore.commands.options import Option, options_of, params_from
from phstore.errors import PhstoreError

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
