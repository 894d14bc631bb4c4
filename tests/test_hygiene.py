"""The code is as ruff (configured in pyproject.toml) wants it: lint clean and formatted."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]])
def test_ruff_is_clean(args):
    out = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "phstore", "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
