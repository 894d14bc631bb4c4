"""`phstore verify` proves a finished store and names each kind of damage done to a copy of it;
`phstore repair` mends each kind that can be mended, and the next featurize recomputes what it
reset, to the same values."""

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
from phstore.repair import repair_store
from phstore.store import FRAMES, PENDING, FeatureStore, StoreError
from phstore.verify import verify_store
from tests.helpers import ROOT, carbon_frame, corrupt_inner_chunks, write_trajectory

GROUP = f"C64/{PH().group}"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, client):
    """5 snapshots in chunks of 2 (4 labelled, 1 unlabelled), PH done; beside it its sources."""
    root = tmp_path_factory.mktemp("verify")
    path = root / "s.zarr"
    md = carbon_frame(seed=32)
    md.calc = None  # an unlabelled snapshot (energy NaN) is a consistent one
    ase.io.write(root / "md.xyz", md)
    ingest(path, [write_trajectory(root / "run1.xyz", 4, seed=31), root / "md.xyz"], chunk_size=2, progress=False)
    assert featurize(path, PH(), client, progress=False).computed == 5
    return path


def cli(*words, path):
    return subprocess.run(
        [sys.executable, "-m", "phstore", *words, "--store", str(path), "--quiet", "--workers", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_finished_store_is_consistent(finished, client):
    report = verify_store(finished, progress=False)
    assert report.ok and not report.notes, report.problems
    assert report.snapshots == 5 and report.groups == 1 and report.chunks >= 10
    on_workers = verify_store(finished, client, progress=False)
    assert on_workers.ok and on_workers.chunks == report.chunks
    out = cli("verify", path=finished)
    assert out.returncode == 0 and "consistent" in out.stdout, out.stderr


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


def _garbage_status(path):  # status and error: one chunk of TABLE_ROWS snapshots
    (path / GROUP / "status" / "c" / "0").write_bytes(b"not zstd at all")


def _garbage_error(path):
    (path / GROUP / "error" / "c").mkdir(exist_ok=True)  # no chunk is written while every message is ""
    (path / GROUP / "error" / "c" / "0").write_bytes(b"not zstd at all")


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


def _lost_records_data(path):
    (path / GROUP / "records" / "c000001" / "c" / "0" / "0").unlink()  # reads back as zeros: "row 0 of the chunk"


def _infinite_energy(path):
    zarr.open_array(str(path / "C64" / "frames" / "energy_per_atom"), mode="a")[0] = np.inf


def _duplicate_frame(path):
    arr = zarr.open_array(str(path / "C64" / "frames" / "content_hash"), mode="a")
    arr[1] = arr[0]


def _lost_positions(path):
    (path / "C64" / "frames" / "positions" / "c" / "0" / "0" / "0").unlink()  # the shard: reads back as NaN


def _lost_energy(path):
    (path / "C64" / "frames" / "energy" / "c" / "0").unlink()  # NaN: as if unlabelled


def _lost_codes(path):
    (path / "C64" / "frames" / "trajectory_code" / "c" / "0").unlink()  # 0: lost; readers fall back to the strings
    assert FeatureStore(path).column("C64", "trajectory").tolist() == ["run1"] * 4 + ["md"]


def _garbage_cell(path):
    corrupt_inner_chunks(path / "C64" / "frames" / "cell", [2])  # one chunk of the shard: its other rows kept


DAMAGE = [
    (_garbage_chunk, "histogram: chunk unreadable", [0, 1]),
    (_garbage_status, "status: chunk unreadable", [0, 1, 2, 3, 4]),
    (_garbage_error, "error: chunk unreadable", [0, 1, 2, 3, 4]),
    (_lost_chunk, "histogram: NaN or inf in done rows", [2, 3]),
    (_lost_records, "records/c000001 missing for done rows", [2, 3]),
    (_lost_records_data, "records/c000001: data lost", [2, 3]),
    (_infinite_energy, "infinite energy", [0]),
    (_duplicate_frame, "duplicate snapshots (same content hash)", [0, 1]),
    (_lost_positions, "positions not finite", [0, 1, 2, 3, 4]),
    (_lost_energy, "energy and energy per atom disagree", [0, 1, 2, 3]),
    (_garbage_cell, "cell: chunk unreadable", [4]),
    (_lost_codes, "trajectory_code: codes lost", [0, 1, 2, 3, 4]),
]


def _copy(finished, tmp_path, damage):
    path = tmp_path / "s.zarr"
    shutil.copytree(finished, path)
    for source in ("run1.xyz", "md.xyz"):  # the sources, at the paths the store names
        assert (finished.parent / source).exists()
    damage(path)
    return path


@pytest.mark.parametrize("damage, message, rows", DAMAGE, ids=[d[0].__name__ for d in DAMAGE])
def test_damage_is_found_named_and_mended(finished, tmp_path, client, damage, message, rows):
    path = _copy(finished, tmp_path, damage)
    report = verify_store(path, progress=False)
    found = [d for d in report.damage if message in d.what]
    assert found and found[0].rows == rows, report.problems
    if found[0].group == FRAMES:  # named with the file and frame to read again
        assert any("run1.xyz frame" in p or "md.xyz frame" in p for p in report.problems), report.problems
    fixed = repair_store(path, progress=False)
    assert fixed.ok, fixed.unmended
    featurize(path, PH(), client, progress=False)
    after = verify_store(path, progress=False)
    assert after.ok and not after.notes, after.problems
    before, now = FeatureStore(finished), FeatureStore(path)
    for name in ("positions", "cell", "energy", "energy_per_atom", "content_hash", "trajectory"):
        np.testing.assert_array_equal(now.column("C64", name), before.column("C64", name))
    np.testing.assert_array_equal(
        now.descriptor("C64", PH().group)["histogram"].values, before.descriptor("C64", PH().group)["histogram"].values
    )
    for chunk in range(3):
        np.testing.assert_array_equal(
            now.records("C64", PH().group, chunk)[0], before.records("C64", PH().group, chunk)[0]
        )


def test_unfinished_work_is_a_note_not_damage(finished, tmp_path):
    path = _copy(finished, tmp_path, _pending_row)
    report = verify_store(path, progress=False)
    assert report.ok and report.notes == [f"{GROUP}: 1 snapshots pending (run `phstore featurize ph` to finish them)"]
    out = cli("verify", path=path)
    assert out.returncode == 0 and "unfinished: " in out.stderr and "consistent" in out.stdout


def test_an_unreadable_status_stops_featurize_with_what_to_do(finished, tmp_path, client):
    path = _copy(finished, tmp_path, _garbage_status)
    with pytest.raises(StoreError, match=r"status does not read back .*phstore repair --store"):
        featurize(path, PH(), client, progress=False)
    out = cli("verify", path=path)
    assert out.returncode == 1 and "damage: C64/ph-" in out.stderr and "phstore repair" in out.stdout
    out = cli("repair", path=path)
    assert out.returncode == 0 and "3 shards pending again; run `phstore featurize ph" in out.stdout, out.stderr
    assert FeatureStore(path).status("C64", PH().group).tolist() == [PENDING] * 5


def test_what_cannot_be_mended_is_named(finished, tmp_path):
    """A frame whose source is gone, and features of unknown parameters, are left as they are
    and named: the frame with its file and index, the group with what to do."""
    root = tmp_path / "moved"
    shutil.copytree(finished.parent, root, ignore=shutil.ignore_patterns("s.zarr"))
    path = _copy(finished, tmp_path, _lost_positions)
    _tampered_provenance(path)
    (finished.parent / "run1.xyz").rename(finished.parent / "run1.moved")
    try:
        report = repair_store(path, progress=False)
    finally:
        (finished.parent / "run1.moved").rename(finished.parent / "run1.xyz")
    assert not report.ok
    assert any("run1.xyz frame 2 is no longer there; re-ingest" in u for u in report.unmended), report.unmended
    assert any("provenance" in u and "remove the group" in u for u in report.unmended), report.unmended
    assert report.restored == {"C64": [4]}  # the positions shard held all 5 frames: md.xyz's is still there
