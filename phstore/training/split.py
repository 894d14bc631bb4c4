"""Train/test splits of a collection's snapshots: random (the paper's), by trajectory or by config_type.

Neighbouring MD frames are strongly correlated, so a random split leaks near-copies of test
frames into training; the ``trajectory`` split holds whole melt-quench runs out instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from phstore.params import Parameters, param

SPLITS = ("random", "trajectory", "config_type")
#: The frames column whose values a split keeps whole (a random split: each snapshot on its own).
GROUP_KEYS = {"random": "trajectory", "trajectory": "trajectory", "config_type": "config_type"}


@dataclass(frozen=True)
class Split(Parameters):
    """How snapshots are split: ``random`` (the paper's 80/20) or by ``trajectory``."""

    kind: str = param(
        "random",
        "random: the paper's; trajectory: whole trajectories held out; config_type: whole config_type labels held out",
        choices=SPLITS,
    )
    test_fraction: float = param(0.2, "fraction of the snapshots held out for testing", positive=True, high=0.9)
    seed: int = param(0, "seed of the split (and of the weights)")

    def indices(self, n: int, groups: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(train, test)`` positions in ``range(n)`` (see :func:`split_indices`)."""
        return split_indices(n, self.kind, self.test_fraction, self.seed, groups)


def split_indices(
    n: int,
    kind: str = "random",
    test_fraction: float = 0.2,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train, test)`` positions in ``range(n)``.

    ``kind="random"`` draws ``round(test_fraction * n)`` test positions; ``kind="trajectory"``
    (or ``"config_type"``) shuffles the distinct ``groups`` (one label per position) and takes whole groups into the
    test set until it holds at least ``test_fraction`` of the positions (never all groups).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), not {test_fraction}")
    rng = np.random.default_rng(seed)
    if kind == "random":
        n_test = min(n - 1, max(1, round(test_fraction * n)))
        test = np.sort(rng.permutation(n)[:n_test])
    elif kind in GROUP_KEYS:
        if groups is None or len(groups) != n:
            raise ValueError(f"a {kind} split needs one {GROUP_KEYS[kind]} label per snapshot")
        labels = np.asarray(groups, dtype=object)
        names = sorted(set(labels.tolist()))
        if len(names) < 2:
            raise ValueError(f"a {kind} split needs at least 2 values of {kind}, the selection has {len(names)}")
        chosen: list[str] = []
        for name in rng.permutation(names)[:-1]:
            chosen.append(name)
            if np.isin(labels, chosen).sum() >= test_fraction * n:
                break
        test = np.flatnonzero(np.isin(labels, chosen))
    else:
        raise ValueError(f"unknown split {kind!r}; choose one of {SPLITS}")
    train = np.setdiff1d(np.arange(n), test)
    return train, test
