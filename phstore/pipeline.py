"""Runnable pipelines: a YAML list of ``phstore`` commands, run in order, each skipped when its
result is already there.

A pipeline file::

    description: what it does
    vars: {out: demo-output}              # {name} in any string below; `phstore run --set out=...`
    store: "{out}/store.zarr"             # given to every command that takes --store
    scheduler: null                       # likewise --scheduler (a running Dask scheduler),
    cluster: null                         # --cluster and --profile (a batch system, deploy/)
    stages:
      - generate: {out: "{out}/data"}
      - ingest: {sources: ["{out}/data"]}
      - featurize: {descriptor: ph}
      - train: {model: cnn, collection: C216, epochs: 3, out: "{out}/models/cnn"}

Each stage is one command (``analyze maps``: a command and its subcommand) with its long
options (``batch_size`` or ``batch-size``; a list repeats a repeatable option; ``true`` sets a
flag). It is parsed by the ``phstore`` command line
itself, so a pipeline can say nothing a command could not. A stage is **done**, and skipped,
when the store already holds its result (see :func:`done`); the work itself runs where the
commands run it (Dask for featurize). Deliberately no more than this: a sequence with
skip-if-done, not a workflow engine.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

#: Top-level keys given to every command that takes them.
SHARED = ("store", "scheduler", "cluster", "profile")

@dataclass(frozen=True)
class Stage:
    """One command of a pipeline and its argument vector (without ``phstore``)."""

    command: str
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


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of ``command`` (words, e.g. ``train`` or ``analyze maps``)."""
    for word in command.split():
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            choices = sorted(sub.choices) if sub else []
            raise ValueError(f"unknown command {command!r}: {word!r} is not one of {choices}")
        parser = sub.choices[word]
    return parser


def stage_argv(parser: argparse.ArgumentParser, command: str, options: dict[str, Any]) -> tuple[str, ...]:
    """The ``phstore`` argument vector of one stage, built from the command's own options."""
    sub = _subparser(parser, command)
    actions = {a.dest: a for a in sub._actions}
    argv: list[str] = command.split()
    positional: list[str] = []
    for key, value in options.items():
        if value is None or value is False or value == "":
            continue
        action = actions.get(key.replace("-", "_"))
        if action is None:
            raise ValueError(f"`phstore {command}` has no option {key!r}; see `phstore {command} --help`")
        values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        if not action.option_strings:
            positional += values
        elif isinstance(action, argparse._StoreTrueAction):
            argv.append(action.option_strings[-1])
        elif isinstance(action, argparse._AppendAction):
            argv += [x for v in values for x in (action.option_strings[-1], v)]
        else:
            argv += [action.option_strings[-1], *values]
    return tuple(argv + positional)


def load_pipeline(path: str | Path, parser: argparse.ArgumentParser, overrides: dict[str, str] | None = None
                  ) -> list[Stage]:
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
        (command, options), = entry.items()
        accepted = {a.dest for a in _subparser(parser, command)._actions}
        options = {k: v for k, v in shared.items() if k in accepted} | {k: _expand(v, variables) for k, v in (options or {}).items()}
        stages.append(Stage(command, stage_argv(parser, command, options)))
    return stages


def _generate_done(args: argparse.Namespace) -> bool:
    from phstore.cli import generate_config
    from phstore.generate import output_files

    return all((Path(args.out) / f).is_file() for f in output_files(generate_config(args)))


def _ingest_done(args: argparse.Namespace) -> bool:
    from phstore.ingest import find_sources
    from phstore.store import FeatureStore

    seen = FeatureStore(args.store, mode="r").ingested_sources()
    return all(str(path) in seen for path, _, _ in find_sources(args.sources))


def _featurize_done(args: argparse.Namespace) -> bool:
    from phstore.cli import make_descriptor
    from phstore.store import FAILED, PENDING, FeatureStore

    group = make_descriptor(args).group
    store = FeatureStore(args.store, mode="r")
    unfinished = (PENDING, FAILED) if args.retry_failed else (PENDING,)
    for coll in args.collection or store.collections:
        if group not in store.descriptor_groups(coll):
            return False
        if store.n_snapshots(coll) and bool(np.isin(store.status(coll, group), unfinished).any()):
            return False
    return True


def _train_done(args: argparse.Namespace) -> bool:
    from phstore.cli import train_output
    from phstore.training.modeldir import load_model_dir

    load_model_dir(train_output(args), args.model)  # raises unless a complete model of that kind is there
    return True


def _predict_done(args: argparse.Namespace) -> bool:
    from phstore.store import PENDING, FeatureStore
    from phstore.training.modeldir import load_model_dir
    from phstore.training.predict import prediction_group

    group = prediction_group(load_model_dir(args.model))
    store = FeatureStore(args.store, mode="r")
    return group in store.descriptor_groups(args.collection) and not (
        store.status(args.collection, group) == PENDING).any()


DONE_CHECKS: dict[str, Callable[[argparse.Namespace], bool]] = {
    "generate": _generate_done, "ingest": _ingest_done, "featurize": _featurize_done,
    "train": _train_done, "predict": _predict_done,
}


def done(parser: argparse.ArgumentParser, stage: Stage) -> bool:
    """Whether the stage's result is already there: generate's files, ingest's sources in the
    store, featurize's descriptor finished in every collection, train's model directory,
    predict's predictions. Reports (compare, info, query) always run."""
    from phstore.store import StoreError
    from phstore.training.modeldir import ModelDirError

    check = DONE_CHECKS.get(stage.command)
    if check is None:
        return False
    try:
        return check(parser.parse_args(stage.argv))
    except (OSError, KeyError, ValueError, ModelDirError, StoreError, SystemExit):
        return False  # its inputs are not there yet (a model, a store): not done; running it says why



def run_pipeline(path: str | Path, parser: argparse.ArgumentParser, overrides: dict[str, str] | None = None,
                 dry_run: bool = False) -> int:
    """Run the stages of a pipeline file in order, skipping those already done; stop at the
    first that fails (its exit status is returned). ``dry_run`` only prints the plan."""
    stages = load_pipeline(path, parser, overrides)
    for i, stage in enumerate(stages, 1):
        finished = done(parser, stage)
        print(f"[{i}/{len(stages)}] {'done, skipped: ' if finished else ''}{stage}", flush=True)
        if finished or dry_run:
            continue
        args = parser.parse_args(stage.argv)
        try:
            code = int(args.func(args) or 0)
        except SystemExit as exc:  # a command's clear error: print it, stop here
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr, flush=True)
            code = exc.code if isinstance(exc.code, int) else 1
        if code:
            print(f"stage {i} ({stage.command}) failed with status {code}; fix it and run the pipeline again "
                  "(finished stages are skipped)", flush=True)
            return code
    return 0
