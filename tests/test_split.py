"""Train/test splits: sizes, disjointness, whole trajectories held out."""

import numpy as np
import pytest

from phstore.training.split import split_indices


def test_random_split_is_disjoint_covering_and_seeded():
    train, test = split_indices(50, "random", 0.2, seed=1)
    assert len(test) == 10 and len(np.intersect1d(train, test)) == 0
    assert sorted([*train, *test]) == list(range(50))
    assert np.array_equal(test, split_indices(50, "random", 0.2, seed=1)[1])
    assert not np.array_equal(test, split_indices(50, "random", 0.2, seed=2)[1])


def test_trajectory_split_holds_out_whole_trajectories():
    groups = [f"run{i % 6}" for i in range(60)]
    train, test = split_indices(60, "trajectory", 0.2, seed=0, groups=groups)
    held = {groups[i] for i in test}
    assert held.isdisjoint({groups[i] for i in train})
    assert len(test) >= 12 and len(train) > 0


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="at least 2 values of trajectory"):
        split_indices(5, "trajectory", 0.2, groups=["a"] * 5)
    with pytest.raises(ValueError, match="unknown split"):
        split_indices(5, "kfold")
    with pytest.raises(ValueError, match=r"test_fraction"):
        split_indices(5, "random", 1.5)
