"""Every ``phstore`` command as an object (:class:`~phstore.commands.base.Command`), and the
argument parser made of them. ``phstore.cli`` and ``phstore.pipeline`` both use this; neither
imports the other.

Adding a command: a :class:`Command` in the module of its kind, listed in that module's
``COMMANDS``. Commands of several words (``featurize ph``) sit under the first word's entry in
:data:`GROUPS`.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from phstore.commands import analyze, data, featurize, inspect, models
from phstore.commands.base import Command
from phstore.commands.options import add_options

COMMANDS: list[Command] = [*data.COMMANDS, *featurize.COMMANDS, *models.COMMANDS, *analyze.COMMANDS, *inspect.COMMANDS]

#: What the second word of multi-word commands names, and the first word's help.
GROUPS = {
    "featurize": (
        "DESCRIPTOR",
        "compute a descriptor for every pending snapshot on Dask workers (exit 3 if frames failed)",
    ),
    "train": ("MODEL", "train a model on stored data and write a model directory"),
    "analyze": ("ANALYSIS", "descriptor-space maps, the Ridge coefficient map, inverse analysis"),
    "cluster": ("WHAT", "inspect the batch-system set-up (deploy/)"),
}

DESCRIPTION = (
    "Feature store of persistent-homology descriptors for amorphous materials "
    "(generate → ingest → featurize on Dask → train → analyze). Exit status: 0 all done, 1 error, "
    "3 finished with rejected or failed frames."
)


def find(words: Sequence[str], commands: Sequence[Command] = COMMANDS) -> Command:
    """The command named by ``words`` (e.g. ``["featurize", "ph"]``), or ValueError listing them."""
    for command in commands:
        if tuple(words) == command.words:
            return command
    raise ValueError(f"unknown command {' '.join(words)!r}; commands: {', '.join(c.name for c in commands)}")


def build_parser(commands: Sequence[Command] = COMMANDS, prog: str = "phstore") -> argparse.ArgumentParser:
    """The argument parser of ``commands``; parsed arguments carry their command (``args.command``)."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    subparsers = {(): parser.add_subparsers(dest="words0", required=True, metavar="COMMAND")}
    parsers: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for command in commands:
        for depth in range(1, len(command.words) + 1):
            words = command.words[:depth]
            if words in parsers:
                continue
            leaf = depth == len(command.words)
            metavar, text = (None, command.help) if leaf else GROUPS[words[0]]
            parsers[words] = subparsers[words[:-1]].add_parser(words[-1], help=text, description=text)
            if not leaf:
                subparsers[words] = parsers[words].add_subparsers(dest=f"words{depth}", required=True, metavar=metavar)
        add_options(parsers[command.words], command.options())
        parsers[command.words].set_defaults(command=command)
    return parser
