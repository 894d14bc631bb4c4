"""Where the Dask work runs: an embedded LocalCluster (the default), workers submitted to a batch
system through dask-jobqueue (SLURM, PBS, SGE, LSF), or a scheduler that is already running.

Every option falls back to Dask's configuration, as dask-jobqueue's keywords do: phstore's own
under ``phstore.cluster`` (``kind``, ``jobs``, ``min-jobs``, ``max-jobs``, ``tls``,
``start-timeout``, ``worker-env``, ``worker-config``), the batch system's under
``jobqueue.<kind>`` (cores, memory, walltime, queue, account, job-script-prologue,
worker-extra-args, ...). A *profile* is such a file (``deploy/slurm.yaml``): it is read on top
of the built-in defaults and under the environment (``DASK_JOBQUEUE__SLURM__MEMORY=8GB`` still
wins), and explicit arguments win over everything.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

import dask
import dask.config
import yaml
from dask.utils import parse_timedelta
from distributed import Client, LocalCluster
from distributed.security import Security

from phstore.cluster_options import ClusterOptions
from phstore.errors import PhstoreError

#: dask-jobqueue's cluster class for each ``--cluster`` kind.
JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}
KINDS = ("local", *JOBQUEUE)
#: How long a LocalCluster waits for a lost worker to come back before closing its nanny: never.
KEEP_LOST_WORKERS_DAYS = 3650

dask.config.update_defaults(
    {
        "phstore": {
            "cluster": {
                "kind": "local",
                "jobs": 1,  # batch jobs to keep running (ignored when max-jobs is set)
                "min-jobs": None,  # adaptive scaling between min-jobs and max-jobs
                "max-jobs": None,
                "tls": None,  # None: on for batch systems, off for the local cluster
                "start-timeout": 1800,  # seconds to wait for the first worker of a batch cluster
                # what the workers phstore starts run with (see worker_env, worker_config); a null drops an entry
                "worker-env": {
                    "MALLOC_ARENA_MAX": 1,
                    "MALLOC_MMAP_THRESHOLD_": 32 << 20,
                    "MALLOC_TRIM_THRESHOLD_": 1 << 30,
                },
                "worker-config": {
                    "distributed": {
                        "worker": {
                            "daemon": False,  # workers start descriptor children with subprocess
                            "profile": {"interval": "100ms"},
                            "memory": {"monitor-interval": "500ms"},
                        },
                        "admin": {"tick": {"interval": "200ms"}, "system-monitor": {"interval": "1s"}},
                    }
                },
            }
        }
    }
)


class ClusterError(PhstoreError, RuntimeError):
    """The cluster could not be set up as asked."""


def worker_env() -> dict[str, str]:
    """Environment variables phstore starts worker processes with (``phstore.cluster.worker-env``).

    Dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which makes glibc hand freed
    memory back to the kernel at once and serve every block over 128 KiB with a fresh ``mmap``;
    a descriptor then faults its per-frame buffers in again on every frame (measured in
    ``benchmarks/README.md``). The defaults keep freed memory in one arena and serve blocks up to 32 MiB (glibc's
    largest threshold) from it: no faults per frame, and the memory a worker keeps is its peak
    working set, which SchNet's pass size bounds (:class:`~phstore.descriptors.SchNet`'s
    ``batch_atoms``); larger blocks still come and go with ``mmap``. glibc reads these at
    process start, so they must be in the environment the worker is spawned with; other C
    libraries ignore them. For a LocalCluster a variable already set in this process's
    environment wins (Dask's nannies read ``os.environ`` first): unset it, or set the value
    in the config, to change it.
    """
    return {k: str(v) for k, v in dask.config.get("phstore.cluster.worker-env").items() if v is not None}


def worker_config() -> dict[str, Any]:
    """Dask config of the workers phstore starts (``phstore.cluster.worker-config``), flat.

    Non-daemonic workers, and fewer wake-ups of a worker's background threads (profiler,
    event-loop tick, memory and system monitors): each takes the GIL from the task thread.
    With Dask's defaults they took 5 % of a GIL-bound task's time; with these, 1-2 %.
    """
    return {k: v for k, v in _flatten(dask.config.get("phstore.cluster.worker-config")).items() if v is not None}


def worker_exports() -> list[str]:
    """:func:`worker_env` and :func:`worker_config` as shell ``export`` lines, for batch jobs and
    for workers started by hand (``phstore cluster worker-env``)."""
    dask_env = {"DASK_" + k.upper().replace(".", "__").replace("-", "_"): v for k, v in worker_config().items()}
    return [f"export {k}={v}" for k, v in (worker_env() | dask_env).items()]


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``, so that setting a profile replaces single keys only."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and key != "scheduler-options":
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@contextmanager
def profile(path: str | Path | None) -> Iterator[None]:
    """Dask config with the profile at ``path`` on top of the defaults and under the environment."""
    if path is None:
        yield
        return
    import dask_jobqueue  # noqa: F401  (its defaults must be in the config before a profile covers them)

    try:
        tree = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ClusterError(f"cannot read the cluster profile {path}: {exc} (see deploy/ for examples)") from None
    if not isinstance(tree, dict):
        raise ClusterError(f"the cluster profile {path} must be a mapping like deploy/slurm.yaml")
    with dask.config.set(_flatten(tree) | _flatten(dask.config.collect_env())):
        yield


def seconds(text: str) -> float:
    """``HH:MM:SS``, ``MM:SS``, ``D-HH:MM:SS`` (walltimes) or ``90m``/``2h``/``300s`` (Dask) → seconds."""
    text = str(text).strip()
    if ":" not in text:
        return float(parse_timedelta(text))
    days, _, clock = text.rpartition("-")
    parts = [float(p) for p in clock.split(":")]
    return (float(days) if days else 0) * 86400 + sum(p * 60**i for i, p in enumerate(reversed(parts)))


def worker_args(kind: str) -> list[str]:
    """``jobqueue.<kind>.worker-extra-args`` with a ``--lifetime`` shorter than the walltime.

    A worker that reaches its lifetime hands its tasks back and exits before the batch system
    kills the job; adaptive scaling then submits a fresh job. Without one in the profile it is
    set to 90 % of the walltime (stagger 5 %); a given one must be shorter than the walltime.
    """
    args = list(dask.config.get(f"jobqueue.{kind}.worker-extra-args") or [])
    walltime = dask.config.get(f"jobqueue.{kind}.walltime", None)
    if not walltime:
        return args
    wall = seconds(walltime)
    if "--lifetime" in args:
        lifetime = seconds(args[args.index("--lifetime") + 1])
        if lifetime >= wall:
            raise ClusterError(
                f"worker --lifetime {lifetime:.0f} s is not shorter than the walltime {walltime}: "
                "jobs would be killed mid-task; set it to about 90 % of the walltime"
            )
        return args
    return args + ["--lifetime", f"{int(0.9 * wall)}s", "--lifetime-stagger", f"{int(0.05 * wall)}s"]


def jobs_directory(kind: str, key: str) -> Path:
    """``jobqueue.<kind>.<key>`` (log-directory, shared-temp-directory), default under ``./phstore-jobs``."""
    default = Path("phstore-jobs") / ("logs" if key == "log-directory" else "")
    return Path(dask.config.get(f"jobqueue.{kind}.{key}") or default).resolve()


def jobqueue_cluster(options: ClusterOptions, kind: str):
    """A dask-jobqueue cluster of ``kind`` from Dask config; nothing is submitted until scaled.

    Defaults phstore adds where the config is silent: one single-threaded worker process per
    core (descriptor code is single-threaded), the scheduler's dashboard on loopback, logs and
    run-time certificates under ``./phstore-jobs`` (it must be on a file system the compute
    nodes see), and TLS unless ``tls`` is false.
    """
    import dask_jobqueue

    cls = getattr(dask_jobqueue, JOBQUEUE[kind])
    cfg = f"jobqueue.{kind}"
    cores = dask.config.get(f"{cfg}.cores")
    if not cores or not dask.config.get(f"{cfg}.memory"):
        raise ClusterError(
            f"--cluster {kind} needs cores and memory per job: set them in a profile "
            f"(--profile deploy/{kind}.yaml) or as DASK_JOBQUEUE__{kind.upper()}__CORES / __MEMORY"
        )
    tls = options.get("tls")
    kwargs: dict[str, Any] = {
        "processes": dask.config.get(f"{cfg}.processes") or cores,
        "worker_extra_args": worker_args(kind),
        "log_directory": str(jobs_directory(kind, "log-directory")),
        "shared_temp_directory": str(jobs_directory(kind, "shared-temp-directory")),
        "scheduler_options": {"dashboard_address": "127.0.0.1:0", **dask.config.get(f"{cfg}.scheduler-options", {})},
        "job_script_prologue": [*(dask.config.get(f"{cfg}.job-script-prologue", []) or []), *worker_exports()],
    }
    for key in ("log-directory", "shared-temp-directory"):  # the certificates are written at once
        jobs_directory(kind, key).mkdir(parents=True, exist_ok=True)
    if tls is None or tls:
        kwargs["security"] = Security.temporary()
    return cls(**kwargs)


@contextmanager
def local_cluster(options: ClusterOptions) -> Iterator[LocalCluster]:
    """A LocalCluster on loopback (dashboard too): one single-threaded worker process per core,
    started with :func:`worker_env` and :func:`worker_config`, closed on exit.

    Dask's nannies put the workers' environment (``OMP_NUM_THREADS=1``, the malloc settings)
    into this process's ``os.environ`` before they spawn; the values this process had are put
    back once the workers are up and again on exit, so that work here (a pipeline's training
    stage: torch would otherwise start with one thread) keeps them.

    A worker that dies (a task that kills it, the kernel's OOM killer) is started again by its
    nanny, always: the cluster never closes the nanny of a lost worker (Dask's
    ``distributed.deploy.lost-worker-timeout``, which closed it for good when a second death
    fell in the window before the restarted worker registered, and a featurize run then waited
    for a worker forever).
    """
    own = dict(os.environ)
    leaked = None  # until the cluster is up: whatever differs from ``own``
    environ = dask.config.get("distributed.nanny.pre-spawn-environ") | worker_env()
    try:
        with dask.config.set({"distributed.deploy.lost-worker-timeout": f"{KEEP_LOST_WORKERS_DAYS}d"}):
            with dask.config.set(worker_config() | {"distributed.nanny.pre-spawn-environ": environ}):
                cluster = LocalCluster(
                    n_workers=options.workers or os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                    memory_limit="auto",
                    security=Security.temporary() if options.get("tls") else None,
                )
            leaked = _restore_environ(own)
            with cluster:
                yield cluster
    finally:
        _restore_environ(own, leaked)  # a nanny that restarted a worker set them again


def _restore_environ(own: dict[str, str], keys: set[str] | None = None) -> set[str]:
    """Give ``keys`` of ``os.environ`` (default: all that differ from ``own``) their values in
    ``own`` back, unsetting those it lacks; returns the keys."""
    if keys is None:
        keys = {k for k in {*own, *os.environ} if own.get(k) != os.environ.get(k)}
    for key in keys:
        if key in own:
            os.environ[key] = own[key]
        else:
            os.environ.pop(key, None)
    return keys


def scale(cluster, options: ClusterOptions) -> None:
    """Submit jobs: adaptive between ``min_jobs`` and ``max_jobs`` when ``max_jobs`` is set, else ``jobs``."""
    if options.get("max_jobs"):
        cluster.adapt(minimum_jobs=options.get("min_jobs") or 0, maximum_jobs=options.get("max_jobs"))
    else:
        cluster.scale(jobs=options.get("jobs"))


@contextmanager
def connect(options: ClusterOptions | None = None) -> Iterator[Client]:
    """Yield a Dask client for ``options`` (default: a LocalCluster on loopback), closed on exit.

    A batch cluster's jobs are cancelled on exit; its client waits up to
    ``phstore.cluster.start-timeout`` seconds for the first worker and then says where to look.
    """
    options = options or ClusterOptions()
    with ExitStack() as stack:
        stack.enter_context(profile(options.profile))
        kind = options.get("kind")
        if options.scheduler:
            kwargs = (
                {"scheduler_file": options.scheduler}
                if options.scheduler.endswith(".json")
                else {"address": options.scheduler}
            )
            yield stack.enter_context(Client(**kwargs))
            return
        if kind == "local":
            cluster = stack.enter_context(local_cluster(options))
            yield stack.enter_context(Client(cluster))
            return
        if kind not in JOBQUEUE:
            raise ClusterError(f"unknown cluster kind {kind!r}; choose one of {', '.join(KINDS)}")
        cluster = stack.enter_context(jobqueue_cluster(options, kind))
        logs = jobs_directory(kind, "log-directory")
        client = stack.enter_context(Client(cluster))
        scale(cluster, options)
        timeout = options.get("start_timeout")
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise ClusterError(
                f"no {kind} worker connected within {timeout} s; see the job logs in {logs}, "
                f"the queue, and `phstore cluster job-script --cluster {kind}`"
            ) from None
        yield client


def job_script(options: ClusterOptions) -> str:
    """The batch script each worker job of ``options.kind`` would be submitted with."""
    with profile(options.profile):
        kind = options.get("kind")
        if kind not in JOBQUEUE:
            raise ClusterError(f"job scripts exist for batch systems only ({', '.join(JOBQUEUE)}), not {kind!r}")
        with jobqueue_cluster(options, kind) as cluster:
            return cluster.job_script()


def describe(client: Client) -> str:
    """One line: where the workers are and the dashboard."""
    workers = len(client.nthreads())
    return f"Dask scheduler {client.scheduler.address}, {workers} workers, dashboard {client.dashboard_link}"
