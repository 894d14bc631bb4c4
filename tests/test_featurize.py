"""Featurize on a real LocalCluster: values, provenance, resume, interruption, killed workers."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path

import ase.io
import numba
import numpy as np
import pytest
import scipy
import zarr

from phstore import open_store
from phstore.descriptors import PH, PHParams
from phstore.featurize import RESUBMITS, featurize
from phstore.ingest import ingest
from phstore.store import DONE, FAILED, PENDING, StoreError, StoreLocked
from phstore.verify import verify_store
from tests.helpers import ROOT, carbon_frame, write_trajectory

N_FRAMES = 16


def make_store(path: Path, source: Path, chunk_size: int = 2) -> Path:
    """A store of ``source``'s frames (overlapping atoms kept: some tests make PH fail on them)."""
    ingest(path, [source], chunk_size=chunk_size, progress=False, min_distance=0)
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_trajectory(tmp_path_factory.mktemp("src") / "run1.xyz", N_FRAMES, n_side=4, seed=5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, source, client) -> Path:
    """A store featurized in one undisturbed run."""
    path = make_store(tmp_path_factory.mktemp("ref") / "s.zarr", source)
    report = featurize(path, PH(), client, progress=False)
    assert report.computed == N_FRAMES and not report.failures and not report.errors
    # every task timed its descriptor work apart from its store reads and writes
    assert all(0 < c.compute_seconds < c.seconds for c in report.shards)
    assert 0 < report.compute_seconds < report.task_seconds
    # the native PH engine runs in the worker's own thread (HomCloud ran in a child: CPU ≪ wall)
    assert all(0 < c.compute_cpu_seconds <= c.compute_seconds * 1.01 + 1e-3 for c in report.shards)
    return path


def assert_same_records(a: np.ndarray, b: np.ndarray) -> None:
    """Diagrams equal to the last bits: HomCloud's values vary by ~1 ulp between calls in one
    process (measured: the same frame twice in one child differs, a fresh child repeats)."""
    assert a.shape == b.shape
    a, b = (x[np.lexsort(np.round(x, 9).T[::-1])] for x in (a, b))  # order robust to ulp ties
    np.testing.assert_array_equal(np.isinf(a), np.isinf(b))
    np.testing.assert_allclose(np.where(np.isinf(a), 0, a), np.where(np.isinf(b), 0, b), rtol=1e-12, atol=1e-14)


def assert_same_features(a: Path, b: Path, group: str) -> None:
    sa, sb = open_store(a), open_store(b)
    da, db = sa.descriptor("C64", group).load(), sb.descriptor("C64", group).load()
    for name in da.data_vars:
        np.testing.assert_array_equal(da[name].values, db[name].values, err_msg=name)
    every = slice(0, N_FRAMES)  # row by row: the stores' shards may differ
    for a, b in zip(sa.row_records("C64", group, every), sb.row_records("C64", group, every), strict=True):
        assert_same_records(a, b)


def test_stored_values_equal_direct_computation(reference, source):
    store = open_store(reference)
    group = PH().group
    ds = store.dataset("C64")
    assert ds["ph_histogram"].chunks is not None  # lazy, dask-backed
    assert (ds["ph_status"].values == DONE).all()
    frames = store.frames("C64")
    atoms = ase.io.read(source, 5)
    direct = PH().compute(atoms)  # in this process, not through the store or Dask
    np.testing.assert_array_equal(ds["ph_histogram"].isel(snapshot=5).values, direct.values["histogram"])
    size = store.shard_size("C64", group)
    records, attrs = store.records("C64", group, 5 // size)
    rows = records[records[:, 0] == 5 % size][:, 1:]
    expected = direct.records[np.lexsort(direct.records.T[::-1])]
    assert_same_records(rows, expected)
    assert attrs["columns"] == ["row", "degree", "birth", "death"]
    np.testing.assert_array_equal(frames.positions.isel(snapshot=5).values, atoms.positions)


def test_provenance_recorded_and_parameters_never_mixed(reference, tmp_path, client):
    path = tmp_path / "s.zarr"
    shutil.copytree(reference, path)
    other = PH(PHParams(bins=32))
    featurize(path, other, client, progress=False)
    store = open_store(path)
    groups = store.descriptor_groups("C64")
    assert set(groups) == {PH().group, other.group} and PH().group != other.group
    prov = groups[other.group]
    assert prov["params"]["bins"] == 32 and prov["params"]["engine"] == "native"
    assert prov["versions"] == {"phstore": version("phstore"), "scipy": scipy.__version__, "numba": numba.__version__}
    ds = store.dataset("C64")
    keys = {PH().provenance()["key"], other.provenance()["key"]}
    assert {f"ph_{k}_histogram" for k in keys} <= set(ds.data_vars)
    assert "ph_histogram" not in ds.data_vars  # ambiguous name is not offered
    assert ds[f"ph_{other.provenance()['key']}_histogram"].shape == (N_FRAMES, 32, 32)


def test_tasks_go_in_batches_and_the_writer_commits_their_status(reference, source, tmp_path, client, monkeypatch):
    """With one task in flight per worker thread, 8 shards still all finish, to the same values;
    the tasks write values only, and the status they return is committed in one shared chunk."""
    import phstore.featurize as featurize_module
    from phstore.store import TABLE_ROWS

    monkeypatch.setattr(featurize_module, "IN_FLIGHT_PER_THREAD", 1)
    submitted = []
    original = client.map
    monkeypatch.setattr(client, "map", lambda *a, **k: submitted.append(len(a[1])) or original(*a, **k))
    path = make_store(tmp_path / "s.zarr", source)
    report = featurize(path, PH(), client, progress=False)
    assert report.computed == N_FRAMES and sum(submitted) == N_FRAMES // 2
    assert max(submitted) <= sum(client.nthreads().values()) < N_FRAMES // 2  # several batches, none over the window
    assert all(c.status is not None for c in report.shards)
    assert_same_features(path, reference, PH().group)
    status = zarr.open_array(str(path / "C64" / PH().group / "status"), mode="r")
    assert status.chunks == (TABLE_ROWS,) and status.shards is None
    assert [p.name for p in (path / "C64" / PH().group / "status" / "c").iterdir()] == ["0"]  # one file


def test_a_shard_of_several_chunks_is_one_task_and_one_file(reference, source, tmp_path, client, monkeypatch):
    """A group cut in 2 shards of 4 chunks (16 snapshots in chunks of 2; a store this small gets
    shards of one chunk unless told to make 2 tasks): 2 tasks, one file per shard of each array,
    one records array per shard, the values and diagrams of the store made chunk by chunk; a
    shard damaged is found, reset by repair and recomputed to the same values."""
    import phstore.store as store_module
    from phstore.repair import repair_store

    monkeypatch.setattr(store_module, "MIN_TASKS", 2)  # read where the group is made: this process
    path = make_store(tmp_path / "s.zarr", source)
    report = featurize(path, PH(), client, progress=False)
    group = PH().group
    store = open_store(path)
    assert store.shard_size("C64", group) == 8 and open_store(reference).shard_size("C64", group) == 2
    assert report.computed == N_FRAMES and len(report.shards) == 2 and store.n_shards("C64", group) == 2
    assert store.shard_rows("C64", group, 1) == slice(8, 16)
    histogram = store.zarr_group("C64")[f"{group}/histogram"]
    assert histogram.chunks[0] == 2 and histogram.shards[0] == 8
    assert sorted(p.name for p in (path / "C64" / group / "histogram" / "c").iterdir()) == ["0", "1"]
    assert sorted(n for n, _ in store.zarr_group("C64")[f"{group}/records"].arrays()) == ["c000000", "c000001"]
    assert_same_features(path, reference, group)
    for f in (path / "C64" / group / "histogram" / "c" / "1").rglob("*"):
        if f.is_file():
            f.unlink()  # shard 1 lost: reads back as NaN
    found = verify_store(path, progress=False)
    assert not found.ok and {r for d in found.damage for r in d.rows} == set(range(8, 16))
    assert repair_store(path, progress=False).reset == {("C64", group): [1]}
    assert featurize(path, PH(), client, progress=False).computed == 8
    assert_same_features(path, reference, group)
    assert verify_store(path, progress=False).ok


def test_attach_to_a_running_scheduler(source, tmp_path, client):
    from phstore.cluster import ClusterOptions, connect

    path = make_store(tmp_path / "s.zarr", source, chunk_size=8)
    with connect(ClusterOptions(scheduler=client.scheduler.address)) as attached:
        assert attached.scheduler.address == client.scheduler.address
        assert featurize(path, PH(), attached, progress=False).computed == N_FRAMES


def test_rerun_skips_finished_and_new_frames_are_added(reference, tmp_path, client, source):
    path = tmp_path / "s.zarr"
    shutil.copytree(reference, path)
    again = featurize(path, PH(), client, progress=False)
    assert again.computed == 0 and again.skipped_shards == N_FRAMES // 2
    extra = write_trajectory(tmp_path / "more" / "run2.xyz", 3, n_side=4, seed=9)
    ingest(path, [extra], progress=False)
    assert (open_store(path).descriptor("C64", PH().group)["status"].values[-3:] == PENDING).all()
    more = featurize(path, PH(), client, progress=False)
    assert more.computed == 3
    status = open_store(path).descriptor("C64", PH().group)["status"].values
    assert status.shape == (N_FRAMES + 3,) and (status == DONE).all()


def test_bad_frame_is_recorded_failed_rest_completes(tmp_path, client):
    frames = [carbon_frame(4, seed=i) for i in range(5)]
    frames[2].positions[5] = frames[2].positions[4]  # a duplicated atom
    ase.io.write(tmp_path / "f.xyz", frames, format="extxyz")
    path = make_store(tmp_path / "s.zarr", tmp_path / "f.xyz", chunk_size=1)  # a chunk with no done row
    report = featurize(path, PH(), client, progress=False)
    assert report.computed == 4 and [(r, "duplicated atom" in e) for _, r, e in report.failures] == [(2, True)]
    d = open_store(path).descriptor("C64", PH().group).load()
    assert d.status.values.tolist() == [DONE, DONE, FAILED, DONE, DONE]
    assert "duplicated atom" in d.error.values[2] and np.isnan(d.histogram.values[2]).all()
    assert featurize(path, PH(), client, progress=False).computed == 0  # failures are not retried ...
    assert len(featurize(path, PH(), client, retry_failed=True, progress=False).failures) == 1  # ... unless asked
    assert verify_store(path, progress=False).ok


def test_homcloud_hang_in_a_worker_fails_only_that_frame(tmp_path, client):
    """A frame whose HomCloud call overruns the time limit (a 216-atom cell stretched to aspect
    8: an 8×8×1 supercell of 13,824 atoms, 9-11 s here, against 0.45 s for the cubic ones) is
    failed as hung; the worker and the other frames of its chunk carry on."""
    frames = [carbon_frame(6, seed=i) for i in range(3)]
    side = frames[1].cell[0, 0]
    frames[1].set_cell(np.diag(side * np.array([0.5, 0.5, 4.0])), scale_atoms=True)
    ase.io.write(tmp_path / "f.xyz", frames, format="extxyz")
    path = make_store(tmp_path / "s.zarr", tmp_path / "f.xyz", chunk_size=3)  # one task, one worker
    pids = client.run(os.getpid)
    ph = PH(PHParams(engine="homcloud"), time_limit=3.0)
    report = featurize(path, ph, client, progress=False)
    d = open_store(path).descriptor("C216", ph.group).load()
    assert d.status.values.tolist() == [DONE, FAILED, DONE]
    assert "HomCloud hung (supercell (8, 8, 1))" in d.error.values[1] and not report.errors
    expected = ph.compute(frames[2]).values["histogram"]
    np.testing.assert_allclose(d.histogram.values[2], expected, atol=1e-6)
    assert client.run(os.getpid) == pids  # the child was killed, not the worker
    assert verify_store(path, progress=False).ok


def test_changed_provenance_under_same_group_is_refused(reference, tmp_path, client):
    path = tmp_path / "s.zarr"
    shutil.copytree(reference, path)
    root = zarr.open_group(str(path), mode="a")
    g = root[f"C64/{PH().group}"]
    g.attrs["provenance"] = {**g.attrs["provenance"], "key": "0" * 12}
    with pytest.raises(StoreError, match="provenance key"):
        featurize(path, PH(), client, progress=False)


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_interrupted_client_then_rerun_equals_undisturbed_run(how, reference, source, tmp_path, client):
    """Interrupt `phstore featurize` mid-run (Ctrl-C, or SIGKILL of its whole process group with
    the local cluster in it), then run again."""
    path = make_store(tmp_path / "s.zarr", source)
    cmd = [sys.executable, "-m", "phstore", "featurize", "ph", "--store", str(path), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    group = PH().group
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = int((open_store(path).descriptor("C64", group)["status"].values == DONE).sum())
        except Exception:  # the group may not exist yet
            done = 0
        if done >= 2:
            break
        time.sleep(0.2)
    if how == "ctrl-c":
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=60) != 0
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of it may outlive the test
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 2 <= done < N_FRAMES, "the run was not interrupted mid-way"
    status = open_store(path).descriptor("C64", group)["status"].values
    finished = int((status == DONE).sum())
    assert finished < N_FRAMES
    report = featurize(path, PH(), client, progress=False)
    assert report.computed == N_FRAMES - finished  # nothing finished was recomputed
    shards_left = len({r // 2 for r in np.flatnonzero(status != DONE)})
    assert len(report.shards) == shards_left and report.skipped_shards == N_FRAMES // 2 - shards_left  # tasks
    assert_same_features(path, reference, group)
    assert verify_store(path, progress=False).ok


def test_killed_worker_mid_run_equals_undisturbed_run(reference, source, tmp_path, client):
    path = make_store(tmp_path / "s.zarr", source, chunk_size=2)
    pids = client.run(os.getpid)
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=featurize(path, PH(), client, progress=False)))
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if (open_store(path).descriptor("C64", PH().group)["status"].values == DONE).sum() >= 2:
                break
        except Exception:
            pass
        time.sleep(0.1)
    os.kill(next(iter(pids.values())), signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()
    report = result["r"]
    assert not report.errors and not report.failures
    assert_same_features(path, reference, PH().group)
    assert verify_store(path, progress=False).ok
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker


class KillsItsWorker(PH):
    """PH that kills the worker running it (as a worker retiring at its lifetime, or one killed
    by the batch system, takes its task down) on its first ``deaths`` calls for the frames of
    its first call. Every call leaves a file in ``tally``."""

    def __init__(self, tally: str, deaths: int) -> None:
        super().__init__()
        self.tally, self.deaths = Path(tally), deaths

    def compute_batch(self, frames):
        mine = f"{frames[0].positions[0, 0]:.9f}"
        if not (doomed := self.tally / "doomed").exists():
            doomed.write_text(mine)
        calls = [p.name.split("_")[0] for p in self.tally.glob("*_*")]
        (self.tally / f"{mine}_{len(calls)}").touch()
        if mine == doomed.read_text() and calls.count(mine) < self.deaths:
            os._exit(1)
        return super().compute_batch(frames)


@pytest.fixture(scope="module")
def fragile_client():
    """A one-worker local cluster (phstore's) whose scheduler gives up on a task the first time its worker
    dies (``allowed-failures`` 0: a task caught on one dying worker stands for a task caught
    on the four of a SLURM job retiring at its lifetime)."""
    import dask

    from phstore.cluster import ClusterOptions, connect

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with connect(ClusterOptions(workers=1)) as c:
            yield c


def test_a_task_lost_with_its_workers_is_submitted_again(reference, source, tmp_path, fragile_client):
    """The first task's worker dies (the scheduler reports ``KilledWorker``): the run submits
    that shard again and ends equal to an undisturbed run."""
    path = make_store(tmp_path / "s.zarr", source, chunk_size=2)
    tally = tmp_path / "tally"
    tally.mkdir()
    report = featurize(path, KillsItsWorker(str(tally), deaths=1), fragile_client, progress=False)
    assert not report.errors and not report.failures and report.computed == N_FRAMES
    assert len(list(tally.glob("*_*"))) == N_FRAMES // 2 + 1  # one task per shard, and the lost one again
    assert_same_features(path, reference, PH().group)
    assert verify_store(path, progress=False).ok


def test_a_task_that_keeps_killing_its_workers_is_reported_after_its_resubmissions(source, tmp_path, fragile_client):
    """A shard whose task kills every worker it runs on is tried ``1 + RESUBMITS`` times, then
    reported; its rows stay pending for the next run. (One shard: a task waiting on a dying
    worker is lost with it too, so with two the other's losses would depend on timing.)"""
    path = make_store(tmp_path / "s.zarr", write_trajectory(tmp_path / "f.xyz", 2, seed=9), chunk_size=2)
    tally = tmp_path / "tally"
    tally.mkdir()
    report = featurize(path, KillsItsWorker(str(tally), deaths=1 + RESUBMITS), fragile_client, progress=False)
    assert len(report.errors) == 1 and "KilledWorker" in report.errors[0] and report.computed == 0
    assert len(list(tally.glob("*_*"))) == 1 + RESUBMITS
    assert (open_store(path).descriptor("C64", PH().group)["status"].values == PENDING).all()
    assert verify_store(path, progress=False).ok
    report = featurize(path, PH(), fragile_client, progress=False)  # the next run computes it
    assert report.computed == 2 and not report.errors


def test_second_writer_on_the_same_store_is_refused(source, tmp_path, client):
    """Two featurize runs at once on one store: the second stops with a message naming the
    first; the first finishes a correct store."""
    path = make_store(tmp_path / "s.zarr", write_trajectory(tmp_path / "f.xyz", 2, seed=9), chunk_size=1)
    cmd = [sys.executable, "-m", "phstore", "featurize", "ph", "--store", str(path), "--workers", "1", "--quiet"]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while open_store(path).writer_info().get("pid") != first.pid:
            assert time.monotonic() < deadline and first.poll() is None, "the first run never took the lock"
            time.sleep(0.1)
        with pytest.raises(StoreLocked, match=f"being written by `featurize ph-.*pid {first.pid}"):
            featurize(path, PH(), client, progress=False)
        second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert second.returncode != 0 and "wait for it to finish" in second.stderr
        assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    finally:
        first.kill()
        first.wait()
    assert (open_store(path).descriptor("C64", PH().group)["status"].values == DONE).all()
    assert verify_store(path, progress=False).ok
