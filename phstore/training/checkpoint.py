"""Checkpoints of a network's training, so an interrupted fit resumes at the epoch it reached.

A long fit (the paper's CNN: 1600 epochs, ~7 min each on a CPU; SchNet: ~90 min per epoch on
two CPU cores) outlives sessions and batch jobs. While it runs, the training state (the module's
and the optimiser's tensors, the learning-rate schedule, the shuffling generator and the learning
curve so far) is written at the end of an epoch at most every :data:`EVERY_SECONDS`, atomically,
to ``checkpoint.pt`` in the model directory being written. A loop whose epochs are long
(SchNet) also saves in the middle of one, when :meth:`Checkpoint.due`, with the epoch's own state
(its batch order, the batches done, its running sums), and takes that state back with
:meth:`Checkpoint.within_epoch`. Training the same model again (same kind, parameters, split,
rows and store) continues from it with the same batches, so the result is the one an
uninterrupted fit gives; a checkpoint of any other training is ignored (and replaced).
:func:`~phstore.training.train.train` removes it once the model directory is complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
#: Least seconds between two checkpoint writes (one at the end of an epoch, at most this often).
EVERY_SECONDS = 60.0


def fingerprint(**what: Any) -> str:
    """SHA-256 of what makes a training run itself (values JSON can hold, and numpy arrays)."""
    plain = json.dumps(what, sort_keys=True, default=lambda v: np.asarray(v).tolist())
    return hashlib.sha256(plain.encode()).hexdigest()


class Checkpoint:
    """The checkpoint file ``path`` of the training run identified by ``key`` (a
    :func:`fingerprint`); written at most every ``every_seconds`` (default
    :data:`EVERY_SECONDS`)."""

    def __init__(self, path: str | Path, key: str, every_seconds: float | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.every_seconds = every_seconds
        self._saved = time.monotonic()
        self.restored = 0  # epochs the last restore found finished
        self.within: dict | None = None  # the restored state of an epoch saved half-way

    def restore(self, parts: dict[str, Any], rng: np.random.Generator, history: list[dict]) -> int:
        """Load ``parts``, ``rng`` and ``history`` from the checkpoint of this run, if there is
        one; return the number of epochs it had finished (0 without one)."""
        import torch

        self._saved = time.monotonic()
        if not self.path.is_file():
            return 0
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: start again
            log.warning("%s is unreadable (%s): training from the first epoch", self.path, exc)
            return 0
        if state.get("key") != self.key:
            log.warning("%s belongs to another training run: training from the first epoch", self.path)
            return 0
        for name, part in parts.items():
            part.load_state_dict(state["parts"][name])
        rng.bit_generator.state = json.loads(state["rng"])
        history[:] = json.loads(state["history"])
        self.within = json.loads(state["within"]) if "within" in state else None
        where = " (part-way through it)" if self.within else ""
        log.warning("resuming %s at epoch %d%s", self.path.parent, state["epoch"] + 1, where)
        self.restored = int(state["epoch"])
        return self.restored

    def within_epoch(self) -> dict | None:
        """The ``within`` state the restored checkpoint was saved with in the middle of the
        epoch it resumes (returned once; None when it was saved between epochs)."""
        within, self.within = self.within, None
        return within

    def due(self) -> bool:
        """Whether :attr:`every_seconds` have passed since the last write (or the restore), so
        that :meth:`save` writes."""
        every = EVERY_SECONDS if self.every_seconds is None else self.every_seconds
        return time.monotonic() - self._saved >= every

    def save(
        self,
        epoch: int,
        parts: dict[str, Any],
        rng: np.random.Generator,
        history: list[dict],
        within: dict | None = None,
    ) -> None:
        """Write the state after ``epoch`` finished epochs if :attr:`every_seconds` have passed
        since the last write (or the restore); ``within`` (values JSON can hold) is the state
        of epoch ``epoch`` itself when it is saved before its end."""
        import torch

        if not self.due():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        state = {
            "key": self.key,
            "epoch": epoch,
            "parts": {name: part.state_dict() for name, part in parts.items()},
            "rng": json.dumps(rng.bit_generator.state),
            "history": json.dumps(history),
        }
        if within is not None:
            state["within"] = json.dumps(within)
        torch.save(state, partial)
        os.replace(partial, self.path)
        self._saved = time.monotonic()

    def clear(self) -> None:
        """Remove the checkpoint (the model directory is complete)."""
        self.path.unlink(missing_ok=True)


def epochs(
    total: int,
    checkpoint: Checkpoint | None,
    parts: dict[str, Any],
    rng: np.random.Generator,
    history: list[dict],
    desc: str,
    progress: bool = False,
) -> Iterator[int]:
    """The epochs (0-based) of ``total`` still to run, with a progress bar: first ``parts``
    (objects with ``state_dict``/``load_state_dict``: module, optimiser, schedule), ``rng`` and
    ``history`` are restored from ``checkpoint`` if it holds this run; after each epoch, the
    last too, they are saved to it (at most every :attr:`Checkpoint.every_seconds`), so that an
    interruption after the fit (a SchNet's predictions of every row take most of an hour on a
    CPU) does not lose its last epoch."""
    start = checkpoint.restore(parts, rng, history) if checkpoint is not None else 0
    for epoch in tqdm(range(start, total), desc=desc, unit="epoch", initial=start, total=total, disable=not progress):
        yield epoch
        if checkpoint is not None:
            checkpoint.save(epoch + 1, parts, rng, history)


def batch_bar(batches: Iterable, n: int, size: int, desc: str, progress: bool, done: int = 0) -> Iterable:
    """``batches`` (of ``n`` rows in batches of ``size``; ``done`` rows done before) under a
    progress bar that goes when it ends, shown if ``progress``."""
    return tqdm(
        batches,
        desc=desc,
        unit="batch",
        initial=done // size,
        total=-(-n // size),
        leave=False,
        disable=not progress,
    )
