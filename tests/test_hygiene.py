"""The code is as ruff (configured in pyproject.toml) wants it: lint clean and formatted; the
scripts of the results page still run against the API they import."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]])
def test_ruff_is_clean(args):
    out = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "phstore", "tests", "benchmarks", "results"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


@pytest.mark.parametrize("script", sorted((ROOT / "results" / "evidence").glob("*.py")), ids=lambda p: p.name)
def test_evidence_scripts_import_and_explain_themselves(script):
    """They run on a finished paper store only, so here: every name they import exists and
    ``--help`` says what they measure."""
    out = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "--store" in out.stdout, out.stderr[-2000:]
