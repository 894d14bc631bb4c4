"""Runnable pipelines: a YAML list of ``phstore`` commands, run in order, each skipped when its
result is already there.

A pipeline file::

    description: what it does
    vars: {out: demo-output}              # {name} in any string below; `phstore run --set out=...`
    store: "{out}/store.zarr"             # given to every command that takes --store
    scheduler: null                       # likewise --scheduler (a running Dask scheduler),
    cluster: null                         # --cluster, --profile and --tls (a batch system, deploy/)
    stages:
      - generate: {out: "{out}/data"}
      - ingest: {sources: ["{out}/data"]}
      - featurize ph: {}
      - train cnn: {collection: C216, epochs: 3, out: "{out}/models/cnn"}

Each stage is one command (its words, e.g. ``featurize ph`` or ``analyze maps``) with its
options (``batch_size`` or ``batch-size``; a list gives several values or repeats a repeatable
option; ``true``/``false`` set a flag or a switch). The options become the command line the
stage runs (:class:`~phstore.commands.options.Option`), so a pipeline can say nothing a command
line could not. A stage is **done**, and skipped, when its command finds its result already
there (:meth:`~phstore.commands.base.Command.done`); the work itself runs where the commands run
it (Dask for featurize). A stage that finishes with rejected or failed frames (exit 3) does not
stop the pipeline; the run then exits 3. Deliberately no more than this: a sequence with
skip-if-done, not a workflow engine.

Each stage that runs is timed: its wall time and the CPU time of this process and of the
processes it started and waited for (a local cluster's workers; not a remote cluster's), printed
and appended as one JSON line to ``pipeline-stages.jsonl`` beside the store.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import resource
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from phstore.commands import build_parser, find
from phstore.commands.base import ERROR, INCOMPLETE, OK, Command, CommandError
from phstore.commands.options import Option
from phstore.errors import PhstoreError

#: Top-level keys given to every command that takes them.
SHARED = ("store", "scheduler", "cluster", "profile", "tls")


@dataclass(frozen=True)
class Stage:
    """One command of a pipeline and its argument vector (without ``phstore``)."""

    command: Command
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return shlex.join(("phstore", *self.argv))


def _expand(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, str):
        try:
            return value.format(**variables)
        except KeyError as exc:
            raise ValueError(f"{value!r} uses {{{exc.args[0]}}}, which is not in the pipeline's vars") from None
    if isinstance(value, list):
        return [_expand(v, variables) for v in value]
    return value


def stage_argv(command: Command, options: dict[str, Any]) -> tuple[str, ...]:
    """The ``phstore`` argument vector of one stage, from the command's own options."""
    known = {o.name: o for o in command.options()}
    argv: list[str] = list(command.words)
    positional: list[str] = []
    for key, value in options.items():
        option = known.get(key.replace("-", "_"))
        if option is None:
            raise ValueError(f"`phstore {command.name}` has no option {key!r}; see `phstore {command.name} --help`")
        (positional if option.action == "positional" else argv).extend(option.argv(value))
    return tuple(argv + positional)


def load_pipeline(path: str | Path, overrides: dict[str, str] | None = None) -> list[Stage]:
    """The stages of the pipeline file at ``path`` with ``vars`` replaced (``overrides`` first)."""
    spec = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(spec, dict) or not isinstance(spec.get("stages"), list):
        raise ValueError(f"{path} is not a pipeline: it needs a list of `stages` (see phstore/pipeline.py)")
    variables = {k: str(v) for k, v in (spec.get("vars") or {}).items()} | (overrides or {})
    shared = {k: _expand(spec[k], variables) for k in SHARED if spec.get(k) is not None}
    shared = {k: v for k, v in shared.items() if v != ""}  # an empty variable means "the default"
    stages = []
    for i, entry in enumerate(spec["stages"], 1):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"{path}: stage {i} must be one `command: {{options}}` mapping, not {entry!r}")
        ((words, options),) = entry.items()
        command = find(str(words).split())
        accepted = {o.name for o in command.options()}
        options = {k: v for k, v in shared.items() if k in accepted} | {
            k: _expand(v, variables) for k, v in (options or {}).items()
        }
        stages.append(Stage(command, stage_argv(command, options)))
    return stages


def parsed(stage: Stage, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace | None:
    """The stage's options as its command reads them; None, silently, when its command line lacks
    a required option (running the stage says which)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return (parser or build_parser()).parse_args(stage.argv)
    except SystemExit:
        return None


def done(stage: Stage, parser: argparse.ArgumentParser | None = None) -> bool:
    """Whether the stage's result is already there (its command's ``done``); a stage whose inputs
    are not there yet (a model, a store) is not done: running it says why."""
    args = parsed(stage, parser)
    try:
        return args is not None and stage.command.done(args)
    except (OSError, KeyError, ValueError, PhstoreError):
        return False


#: The file beside the store that records every stage run: its wall and CPU seconds.
TIMES = "pipeline-stages.jsonl"


def cpu_seconds() -> float:
    """User and system CPU seconds of this process and of the children it has waited for."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def run_pipeline(path: str | Path, overrides: dict[str, str] | None = None, dry_run: bool = False) -> int:
    """Run the stages of a pipeline file in order, skipping those already done; stop at the
    first that fails (its exit status is returned); a stage that finishes with rejected or
    failed frames goes on, and the run returns :data:`INCOMPLETE`. ``dry_run`` only prints the
    plan."""
    stages = load_pipeline(path, overrides)
    parser = build_parser()
    stores = [getattr(parsed(stage, parser), "store", None) for stage in stages]
    log = next((Path(store).parent / TIMES for store in stores if store), None)
    status = OK
    for i, stage in enumerate(stages, 1):
        finished = done(stage, parser)
        print(f"[{i}/{len(stages)}] {'done, skipped: ' if finished else ''}{stage}", flush=True)
        if finished or dry_run:
            continue
        started, wall, cpu = datetime.datetime.now().isoformat(timespec="seconds"), time.perf_counter(), cpu_seconds()
        try:
            code = stage.command.run(parser.parse_args(stage.argv))
        except (PhstoreError, ValueError) as exc:  # a command's clear error: print it, stop here
            print(f"phstore: {exc}", file=sys.stderr, flush=True)
            code = ERROR
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        print(f"[{i}/{len(stages)}] took {wall:.1f} s wall, {cpu:.1f} s CPU (exit {code})", flush=True)
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            record = {"stage": i, "command": str(stage), "started": started, "wall_s": wall, "cpu_s": cpu, "exit": code}
            with open(log, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        if code == INCOMPLETE:
            status = INCOMPLETE
        elif code != OK:
            print(
                f"stage {i} ({stage.command.name}) failed with status {code}; fix it and run the pipeline again "
                "(finished stages are skipped)",
                flush=True,
            )
            return code
    return status


class Run(Command):
    words = ("run",)
    help = "run a pipeline file (pipelines/*.yaml): its stages in order, those already done skipped"

    def options(self) -> list[Option]:
        return [
            Option("pipeline", "pipeline file, e.g. pipelines/quick.yaml", action="positional"),
            Option("set", "override one of the file's vars (repeatable)", action="append", metavar="NAME=VALUE"),
            Option("dry_run", "print each stage's command and whether it is done; run nothing", action="flag"),
        ]

    def run(self, args: argparse.Namespace) -> int:
        overrides = dict(item.partition("=")[::2] for item in args.set or ())
        try:
            return run_pipeline(args.pipeline, overrides, dry_run=args.dry_run)
        except (OSError, ValueError) as exc:
            raise CommandError(f"{args.pipeline}: {exc}") from None
