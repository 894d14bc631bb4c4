"""Cluster set-up: profiles under Dask config, job scripts, worker lifetimes, loopback and TLS."""

import asyncio
import os

import dask.config
import pytest
import yaml
from distributed.comm import connect as comm_connect

from phstore.cluster import (
    ClusterError,
    ClusterOptions,
    connect,
    job_script,
    profile,
    seconds,
    worker_config,
    worker_env,
    worker_exports,
)
from tests.helpers import ROOT, run

DEPLOY = ROOT / "deploy"


def write_profile(path, **slurm):
    path.write_text(
        yaml.safe_dump(
            {
                "jobqueue": {"slurm": {"cores": 2, "memory": "4GB", "walltime": "01:00:00", **slurm}},
                "phstore": {"cluster": {"jobs": 3}},
            }
        )
    )
    return path


def test_profile_sits_under_the_environment_and_over_the_defaults(tmp_path, monkeypatch):
    path = write_profile(tmp_path / "p.yaml", queue="short")
    monkeypatch.setenv("DASK_JOBQUEUE__SLURM__MEMORY", "8GB")
    with profile(path):
        assert dask.config.get("jobqueue.slurm.queue") == "short"  # from the profile
        assert dask.config.get("jobqueue.slurm.memory") == "8GB"  # the environment wins
        assert dask.config.get("jobqueue.slurm.death-timeout") == 60  # dask-jobqueue's default kept
        assert ClusterOptions().get("jobs") == 3 and ClusterOptions(jobs=5).get("jobs") == 5  # arguments win
    assert dask.config.get("jobqueue.slurm.queue") is None  # nothing leaks out
    script = job_script(ClusterOptions(kind="slurm", profile=path))
    assert "#SBATCH -p short" in script and "#SBATCH --mem=8G" in script and "#SBATCH --cpus-per-task=2" in script


def test_job_script_of_the_shipped_profiles(tmp_path):
    """`phstore cluster job-script` prints what would be submitted: one single-threaded worker
    per core, TLS with run-time certificates, a lifetime shorter than the walltime."""
    for kind in ("slurm", "pbs"):
        text = (DEPLOY / f"{kind}.yaml").read_text()
        config = yaml.safe_load(text)["jobqueue"][kind]
        script = run("cluster", "job-script", "--cluster", kind, "--profile", str(DEPLOY / f"{kind}.yaml"))
        assert script.startswith("#!/usr/bin/env bash")
        assert "--nthreads 1 --memory-limit" in script and f"--nworkers {config['cores']}" in script
        assert "--protocol tls://" in script and "--tls-key" in script
        for line in [*config["job-script-prologue"], *worker_exports()]:
            assert line in script
        args = config["worker-extra-args"]
        assert seconds(args[args.index("--lifetime") + 1]) < seconds(config["walltime"])


def test_lifetime_not_shorter_than_walltime_is_refused(tmp_path):
    path = write_profile(tmp_path / "p.yaml", walltime="00:30:00", **{"worker-extra-args": ["--lifetime", "45m"]})
    with pytest.raises(ClusterError, match="not shorter than the walltime"):
        job_script(ClusterOptions(kind="slurm", profile=path))
    path = write_profile(tmp_path / "q.yaml", walltime="02:00:00")
    assert "--lifetime 6480s --lifetime-stagger 360s" in job_script(
        ClusterOptions(kind="slurm", profile=path, tls=False)
    )


def test_missing_resources_say_what_to_set():
    with pytest.raises(ClusterError, match="needs cores and memory.*deploy/slurm.yaml"):
        job_script(ClusterOptions(kind="slurm"))


def test_walltime_formats():
    assert seconds("01:30:00") == seconds("90m") == seconds("5400") == 5400
    assert seconds("1-00:00:00") == 86400 and seconds("10:00") == 600 and seconds("2h") == 7200


def test_local_cluster_is_loopback_and_tls_keeps_strangers_out():
    with connect(ClusterOptions(workers=1, tls=True)) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert "127.0.0.1" in client.dashboard_link
        assert all(w.startswith("tls://127.0.0.1:") for w in client.nthreads())
        assert client.submit(sum, [1, 2]).result() == 3
        # tried with bare comms: after one failed Client, a second Client's loop thread once
        # did not start within Dask's 10 s (an AssertionError in LoopRunner, not the refusal)
        with pytest.raises(TypeError, match="TLS expects a `ssl_context`"):
            asyncio.run(reach(address))  # no certificates: no connection
        with pytest.raises(OSError):
            asyncio.run(reach(address.replace("tls://", "tcp://")))  # nor in plain TCP


async def reach(address: str) -> None:
    """Open and close one Dask comm to ``address`` (raises where the scheduler refuses it)."""
    comm = await comm_connect(address, timeout=3)
    await comm.close()


def test_local_cluster_leaves_this_process_environment_as_it_was(monkeypatch):
    """The nannies set the workers' variables in this process to spawn them; they are put back,
    so torch imported here later (a pipeline's training stage) is not held to one thread."""
    for key in ("OMP_NUM_THREADS", "MALLOC_ARENA_MAX"):
        monkeypatch.delenv(key, raising=False)
    own = dict(os.environ)
    with connect(ClusterOptions(workers=1)) as client:
        workers = client.run(lambda: (os.environ.get("OMP_NUM_THREADS"), os.environ.get("MALLOC_ARENA_MAX")))
        assert dict(os.environ) == own
    assert dict(os.environ) == own
    assert list(workers.values()) == [("1", worker_env()["MALLOC_ARENA_MAX"])]


def test_local_cluster_restarts_a_worker_however_soon_it_is_lost():
    """A worker that dies is restarted by its nanny. Dask's SpecCluster closes the nanny of a
    worker whose name is not back within ``lost-worker-timeout`` (15 s): when the check fell
    between a second death and the restart, the cluster lost its worker for good and a featurize
    run waited forever. A timeout of 0 makes every death hit that window; the local cluster
    still gets its worker back and computes."""
    import signal
    import time

    with dask.config.set({"distributed.deploy.lost-worker-timeout": "0s"}):
        with connect(ClusterOptions(workers=1)) as client:
            ((first, pid),) = client.run(os.getpid).items()
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 120
            while set(client.scheduler_info()["workers"]) in (set(), {first}):
                assert time.monotonic() < deadline, "the worker never came back"
                time.sleep(0.2)
            time.sleep(1)  # the cluster's check of its lost worker has run
            assert client.submit(sum, [1, 2], pure=False).result(timeout=120) == 3
            assert len(client.scheduler_info()["workers"]) == 1


def test_default_local_cluster_listens_on_loopback_only(client):
    import psutil

    assert client.scheduler.address.startswith("tcp://127.0.0.1:") and "//127.0.0.1:" in client.dashboard_link
    pids = [os.getpid(), *client.run(os.getpid).values()]  # the scheduler lives in this process
    for pid in pids:  # every socket a worker process listens on is bound to loopback
        listening = [c.laddr.ip for c in psutil.Process(pid).net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all(ip == "127.0.0.1" for ip in listening), listening


def test_workers_start_with_phstore_settings(client):
    """Workers run with phstore.cluster.worker-config (fewer background wake-ups) and are spawned
    with phstore.cluster.worker-env, so a SOAP frame in a worker no longer faults its buffers in
    again (Dask's own setting: ~800 page faults per 216-atom frame); a null in the config drops
    an entry."""
    import platform
    import resource

    from ase.build import bulk

    from phstore.descriptors import SOAP

    config = worker_config()
    assert config["distributed.worker.profile.interval"] == "100ms" and config["distributed.worker.daemon"] is False
    assert all(c == config for c in client.run(lambda: {k: dask.config.get(k) for k in config}).values())
    env = worker_env()
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
    assert all(e == env for e in client.run(lambda: {k: os.environ.get(k) for k in env}).values())

    def soap_faults() -> list[int]:
        atoms = bulk("C", "diamond", a=3.567, cubic=True).repeat(3)
        atoms.rattle(0.1, seed=0)
        faults = []
        for _ in range(12):  # the first calls grow the heap to its working size
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            SOAP().compute(atoms)
            faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
        return faults

    if platform.libc_ver()[0] == "glibc":
        faults = client.submit(soap_faults, pure=False).result()
        assert sorted(faults[1:])[5] < 100, faults  # the median; ~800 with Dask's MALLOC_TRIM_THRESHOLD_
    with dask.config.set(
        {
            "phstore.cluster.worker-env.MALLOC_ARENA_MAX": None,
            "phstore.cluster.worker-config.distributed.admin.tick.interval": None,
        }
    ):
        assert "MALLOC_ARENA_MAX" not in worker_env() and "MALLOC_MMAP_THRESHOLD_" in worker_env()
        assert "distributed.admin.tick.interval" not in worker_config()
        assert "export DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL=100ms" in worker_exports()


def test_descriptor_children_keep_freed_memory_under_any_worker(monkeypatch):
    """An isolated HomCloud child gets phstore's malloc settings even where its parent has Dask's
    (workers phstore did not start)."""
    from phstore.isolation import IsolatedRunner

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    runner = IsolatedRunner()
    try:
        assert {k: runner.call("os:getenv", k) for k in worker_env()} == worker_env()
    finally:
        runner.close()
