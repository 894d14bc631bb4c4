"""The isolated child: results, raised errors, aborts and hangs, and recovery after each."""

import os

import numpy as np
import pytest

from phstore.isolation import ChildCrashed, ChildError, ChildTimeout, IsolatedRunner


@pytest.fixture
def runner():
    r = IsolatedRunner(time_limit=10)
    yield r
    r.close()


def test_result_comes_back(runner):
    out = runner.call("numpy:arange", 5)
    np.testing.assert_array_equal(out, np.arange(5))
    assert runner.call("math:hypot", 3, 4) == 5
    assert runner.started == 1  # one child served both calls


def test_exception_is_reported_and_child_survives(runner):
    with pytest.raises(ChildError, match="ZeroDivisionError"):
        runner.call("operator:truediv", 1, 0)
    assert runner.call("math:sqrt", 4) == 2
    assert runner.started == 1


def test_abort_kills_only_the_child(runner):
    before = runner.call("os:getpid")
    with pytest.raises(ChildCrashed, match="SIGABRT"):
        runner.call("os:abort")
    assert runner.call("math:sqrt", 9) == 3  # a fresh child, and this process lives on
    after = runner.call("os:getpid")
    assert runner.started == 2 and before != after and os.getpid() not in (before, after)


def test_hang_is_cut_at_the_time_limit(runner):
    with pytest.raises(ChildTimeout, match="0.5 s"):
        runner.call("time:sleep", 30, time_limit=0.5)
    assert runner.call("math:sqrt", 16) == 4
    assert runner.started == 2


def _random_points(box, seed):
    box = np.asarray(box, dtype=float)
    return np.random.default_rng(seed).uniform(0, 1, (int(0.4 * box.prod()), 3)) * box, box


def test_real_homcloud_failures_are_contained():
    """Real HomCloud on elongated boxes (longest side ≥ 2× shortest): it aborts the process on
    this 5×5×15 box and never returns on this 10×10×20 one (seeds measured to do so)."""
    r = IsolatedRunner(preload=("homcloud.interface",), time_limit=60)
    fn = "phstore.ph.homcloud:persistence_diagrams"
    try:
        with pytest.raises(ChildCrashed, match="SIGABRT.*overflow_error"):
            r.call(fn, *_random_points([5, 5, 15], 0), (1,))
        with pytest.raises(ChildTimeout):
            r.call(fn, *_random_points([10, 10, 20], 2), (1,), time_limit=5)
        with pytest.raises(ChildError, match="Points are too few"):
            r.call(fn, *_random_points([4, 4, 4], 0), (1,))
        assert len(r.call(fn, *_random_points([10, 10, 10], 0), (1,))) > 0
    finally:
        r.close()
