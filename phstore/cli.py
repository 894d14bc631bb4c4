"""The ``phstore`` command line (also ``python -m phstore``): the commands of
:mod:`phstore.commands` and ``run`` (:mod:`phstore.pipeline`), one error handler, logging.

Exit status: 0 all done; 1 an error, printed as one line on stderr with what to do next (``-v``
adds the traceback); 3 finished, but some frames were rejected or failed (each reported on
stderr, the rest stored); 130 interrupted (^C: finished work is kept, the same command resumes);
141 the output's reader went away (``phstore info | head``), quietly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from phstore import __version__
from phstore.commands import COMMANDS, build_parser
from phstore.commands.base import ERROR
from phstore.errors import PhstoreError
from phstore.pipeline import Run

#: Exit statuses after ^C and after the reader of the output went away (128 + SIGINT or SIGPIPE,
#: as shells report them).
INTERRUPTED, BROKEN_PIPE = 130, 141

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def parser() -> argparse.ArgumentParser:
    """The ``phstore`` parser: every command, ``run``, ``--version`` and the logging options."""
    p = build_parser([*COMMANDS, Run()])
    p.add_argument("--version", action="version", version=f"phstore {__version__}")
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more (-v: INFO, -vv: DEBUG) and show the traceback of an error",
    )
    p.add_argument("--log-level", choices=LOG_LEVELS, help="log level of the logging module (default WARNING)")
    return p


def log_level(args: argparse.Namespace) -> int:
    """The level ``--log-level`` or ``-v`` asks for (WARNING by default)."""
    if args.log_level:
        return getattr(logging, args.log_level)
    return {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``phstore`` command and return its exit status."""
    try:
        try:
            return run(argv)
        finally:
            sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
    except BrokenPipeError:  # the reader stopped (`phstore info | head`): stop quietly, as `head` expects
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return BROKEN_PIPE


def run(argv: Sequence[str] | None) -> int:
    """Parse ``argv``, run its command, and turn phstore's errors and ^C into one line."""
    args = parser().parse_args(argv)
    level = log_level(args)
    handler = logging.StreamHandler()
    handler.setLevel(level)  # also for libraries that set their own loggers' levels (Dask: INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=[handler])
    try:
        return int(args.command.run(args))
    except KeyboardInterrupt:
        print(
            f"\nphstore: interrupted; finished work is kept: run `phstore {args.command.name} ...` again to resume",
            file=sys.stderr,
        )
        return INTERRUPTED
    except (PhstoreError, ValueError, FileNotFoundError) as exc:  # what the user can fix; the rest are bugs
        if level <= logging.INFO:
            logging.getLogger("phstore").exception("the error's traceback")
        print(f"phstore: {exc}", file=sys.stderr)
        return ERROR


if __name__ == "__main__":
    sys.exit(main())
