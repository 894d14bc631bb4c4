"""`phstore featurize --cluster slurm` against a real one-node SLURM (tests/slurm.py): workers
come from sbatch jobs, the store equals a local-cluster run, and nothing outlives the test."""

import shutil
import subprocess
import sys
import time

import ase.io
import numpy as np
import pytest
import yaml

from phstore import open_store
from phstore.descriptors import PH, SOAP, PHParams
from phstore.featurize import featurize
from phstore.ingest import ingest
from phstore.store import DONE
from phstore.verify import verify_store
from tests.helpers import ROOT, carbon_frame, write_trajectory
from tests.slurm import OneNodeSlurm, install

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm():
    reason = install()
    if reason:
        pytest.skip(reason)
    cluster = OneNodeSlurm(cpus=4).start()
    yield cluster
    cluster.stop()
    assert not any(p.poll() is None for p in cluster._procs)


def test_featurize_on_slurm_equals_local(slurm, tmp_path, client):
    source = write_trajectory(tmp_path / "src" / "run1.xyz", 8, n_side=4, seed=21)
    local, remote = tmp_path / "local.zarr", tmp_path / "slurm.zarr"
    for path in (local, remote):
        ingest(path, [source], chunk_size=2, progress=False)
    featurize(local, PH(), client, progress=False)
    profile = slurm.profile(tmp_path / "jobs" / "slurm.yaml")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "phstore",
            "featurize",
            "ph",
            "--store",
            str(remote),
            "--cluster",
            "slurm",
            "--profile",
            str(profile),
            "--jobs",
            "2",
            "--quiet",
        ],
        cwd=ROOT,
        env=slurm.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Dask scheduler tls://127.0.0.1:" in proc.stdout  # TLS is the batch default
    assert "computed 8 snapshots" in proc.stdout
    logs = sorted((tmp_path / "jobs" / "logs").glob("dask-worker-*.err"))
    assert len(logs) == 2, logs  # two sbatch jobs ran the workers
    assert all("Starting established connection" in f.read_text() or "Registered to" in f.read_text() for f in logs)
    a, b = (open_store(p).descriptor("C64", PH().group).load() for p in (local, remote))
    np.testing.assert_array_equal(a["status"].values, b["status"].values)
    np.testing.assert_allclose(a["histogram"].values, b["histogram"].values, rtol=0, atol=1e-6)
    assert slurm.jobs() == []  # the client cancelled its jobs on exit
    # adaptive scaling: jobs come and go with the work; SOAP equals the local run's
    featurize(local, SOAP(), client, progress=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "phstore",
            "featurize",
            "soap",
            "--store",
            str(remote),
            "--cluster",
            "slurm",
            "--profile",
            str(profile),
            "--min-jobs",
            "1",
            "--max-jobs",
            "2",
            "--quiet",
        ],
        cwd=ROOT,
        env=slurm.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and "computed 8 snapshots" in proc.stdout, proc.stderr[-3000:]
    a, b = (open_store(p).descriptor("C64", SOAP().group).load() for p in (local, remote))
    np.testing.assert_allclose(a["mean"].values, b["mean"].values, rtol=1e-6)
    assert verify_store(remote, progress=False).ok
    assert slurm.jobs() == []
    for key in (tmp_path / "jobs").glob(".dask-jobqueue.worker.key*"):  # run-time TLS keys: owner only
        assert key.stat().st_mode & 0o077 == 0


def test_pipeline_inside_one_allocation(slurm, tmp_path):
    """deploy/phstore-allocation.sbatch: scheduler, srun workers and the client in one job, TLS."""
    source = write_trajectory(tmp_path / "data" / "run1.xyz", 4, n_side=4, seed=23)
    pipeline = tmp_path / "tiny.yaml"
    pipeline.write_text(
        yaml.safe_dump(
            {
                "vars": {"scheduler": ""},
                "store": str(tmp_path / "s.zarr"),
                "scheduler": "{scheduler}",
                "stages": [
                    {"ingest": {"sources": [str(source)], "chunk_size": 2}},
                    {"featurize ph": {}},
                    {"verify": {}},
                ],
            }
        )
    )
    out = tmp_path / "allocation.out"
    submit = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--ntasks=2",
            "--ntasks-per-node=2",
            "--mem-per-cpu=1G",
            f"--output={out}",
            "deploy/phstore-allocation.sbatch",
            str(pipeline),
        ],
        cwd=ROOT,
        env=slurm.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submit.returncode == 0, submit.stderr
    job = submit.stdout.strip()
    deadline = time.monotonic() + 300
    while job in slurm.jobs():
        assert time.monotonic() < deadline, out.read_text()[-3000:] if out.exists() else "no output"
        time.sleep(1)
    log = out.read_text()
    assert "consistent (4 snapshots" in log, log[-3000:]
    assert "Dask scheduler tls://" in log  # the client reached the scheduler over TLS
    run_dir = ROOT / "phstore-jobs" / f"allocation-{job}"
    assert (run_dir / "key.pem").stat().st_mode & 0o077 == 0
    shutil.rmtree(run_dir)
    status = open_store(tmp_path / "s.zarr").descriptor("C64", PH().group)["status"].values
    assert (status == DONE).all()


def test_workers_past_their_lifetime_hand_work_back(slurm, tmp_path):
    """Jobs whose workers retire mid-run (a 30 s lifetime, as jobs nearing their walltime do;
    each frame here is a 3–5 s call of the homcloud engine on a 3×3×1 supercell, 7 s for a
    fresh worker's first) are replaced by adaptive scaling; tasks cut short are run again, the
    run completes and the store verifies. 24 frames keep two jobs busy well past one lifetime.
    (A 10 s lifetime left room for one task per worker at best: runs took up to 10 minutes; 20 s
    did too on a machine busy with two trainings, where a fresh worker's first task takes ~20 s.)"""
    frames = [carbon_frame(6, seed=i) for i in range(24)]
    for atoms in frames:
        atoms.set_cell(np.diag(atoms.cell[0, 0] * np.array([2**-0.5, 2**-0.5, 2.0])), scale_atoms=True)
    ase.io.write(tmp_path / "run1.xyz", frames, format="extxyz")
    path = tmp_path / "s.zarr"
    ingest(path, [tmp_path / "run1.xyz"], chunk_size=1, progress=False)
    profile = slurm.profile(
        tmp_path / "jobs" / "slurm.yaml",
        walltime="00:01:00",
        **{
            "worker-extra-args": [
                "--host",
                "127.0.0.1",
                "--dashboard-address",
                "127.0.0.1:0",
                "--lifetime",
                "30s",
                "--lifetime-stagger",
                "2s",
            ]
        },
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "phstore",
            "featurize",
            "ph",
            "--store",
            str(path),
            "--cluster",
            "slurm",
            "--profile",
            str(profile),
            "--min-jobs",
            "1",
            "--max-jobs",
            "2",
            "--engine",
            "homcloud",
            "--quiet",
        ],
        cwd=ROOT,
        env=slurm.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "jobs" / "logs").glob("dask-worker-*.err"))) >= 3  # retired jobs were replaced
    assert (open_store(path).descriptor("C216", PH(PHParams(engine="homcloud")).group)["status"].values == DONE).all()
    assert verify_store(path, progress=False).ok
    assert slurm.jobs() == []
