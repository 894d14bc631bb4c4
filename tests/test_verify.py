"""`phstore verify` passes a finished store and names each kind of damage done to a copy of it."""

import json
import shutil
import subprocess
import sys

import ase.io
import numpy as np
import pytest
import zarr

from phstore.descriptors import PH
from phstore.featurize import featurize
from phstore.ingest import ingest
from phstore.store import PENDING
from phstore.verify import verify_store
from tests.helpers import ROOT, carbon_frame, write_trajectory

GROUP = f"C64/{PH().group}"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, client):
    root = tmp_path_factory.mktemp("verify")
    path = root / "s.zarr"
    md = carbon_frame(seed=32)
    md.calc = None  # an unlabelled snapshot (energy NaN) is a consistent one
    ase.io.write(root / "md.xyz", md)
    ingest(path, [write_trajectory(root / "run1.xyz", 4, seed=31), root / "md.xyz"], chunk_size=2, progress=False)
    assert featurize(path, PH(), client, progress=False).computed == 5
    return path


def cli_verify(path):
    return subprocess.run(
        [sys.executable, "-m", "phstore", "verify", "--store", str(path), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_finished_store_is_consistent(finished):
    report = verify_store(finished, progress=False)
    assert report.ok, report.problems
    assert report.snapshots == 5 and report.groups == 1 and report.chunks >= 10
    out = cli_verify(finished)
    assert out.returncode == 0 and "consistent" in out.stdout


def test_nothing_in_the_store_is_pickled(finished):
    """Every array is numbers or strings under plain codecs, and every attribute plain JSON."""
    for _, arr in zarr.open_group(str(finished), mode="r").members(max_depth=None):
        assert json.loads(json.dumps(dict(arr.attrs))) == dict(arr.attrs)
        if isinstance(arr, zarr.Array):
            assert arr.dtype.kind in "biufT", arr.name
            codecs = [*arr.filters, arr.serializer, *arr.compressors]
            assert not any("pickle" in type(c).__name__.lower() for c in codecs), arr.name


def _garbage_chunk(path):
    (path / GROUP / "histogram" / "c" / "0" / "0" / "0").write_bytes(b"not zstd at all")


def _garbage_status(path):
    (path / GROUP / "status" / "c" / "1").write_bytes(b"not zstd at all")


def _lost_chunk(path):
    (path / GROUP / "histogram" / "c" / "1" / "0" / "0").unlink()  # reads back as NaN fill


def _tampered_provenance(path):
    g = zarr.open_group(str(path / GROUP), mode="a")
    prov = dict(g.attrs["provenance"])
    g.attrs["provenance"] = {**prov, "params": {**prov["params"], "bins": 64}}


def _pending_row(path):
    zarr.open_array(str(path / GROUP / "status"), mode="a")[3] = PENDING


def _lost_records(path):
    shutil.rmtree(path / GROUP / "records" / "c000001")


def _infinite_energy(path):
    zarr.open_array(str(path / "C64" / "frames" / "energy_per_atom"), mode="a")[0] = np.inf


def _duplicate_frame(path):
    arr = zarr.open_array(str(path / "C64" / "frames" / "content_hash"), mode="a")
    arr[1] = arr[0]


@pytest.mark.parametrize(
    "damage,message",
    [
        (_garbage_chunk, "histogram: chunk unreadable"),
        (_garbage_status, "status: chunk unreadable"),
        (_lost_chunk, "histogram: NaN or inf in done snapshots [2, 3]"),
        (_tampered_provenance, "provenance record hashes to"),
        (_pending_row, "1 snapshots pending"),
        (_lost_records, "records/c000001: missing, but 2 rows are done"),
        (_duplicate_frame, "1 duplicate snapshots"),
        (_infinite_energy, "1 snapshots with an infinite energy"),
    ],
)
def test_damage_is_found(finished, tmp_path, damage, message):
    path = tmp_path / "s.zarr"
    shutil.copytree(finished, path)
    damage(path)
    report = verify_store(path, progress=False)
    assert any(message in p for p in report.problems), report.problems
    assert (damage is _pending_row) == any("pending" in p for p in report.problems), report.problems
    if damage is _garbage_chunk:  # the command says so too, and fails
        out = cli_verify(path)
        assert out.returncode == 1 and message in out.stderr
