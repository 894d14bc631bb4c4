"""Where the Dask work runs, as options: :class:`ClusterOptions`, light (it imports no Dask), so
every command that runs on workers offers its fields as options (``--cluster``, ``--workers``,
...). :mod:`phstore.cluster` starts or attaches to the cluster they describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phstore.params import Parameters, param


@dataclass(frozen=True)
class ClusterOptions(Parameters):
    """How to get Dask workers; a field left at None falls back to Dask config
    (``phstore.cluster.*``), then to the defaults the help gives."""

    kind: str | None = param(
        None,
        "local: a LocalCluster on this machine (default); slurm, pbs, sge, lsf: workers submitted "
        "as batch jobs through dask-jobqueue (checked when it runs)",
    )
    profile: str | None = param(
        None,
        "cluster profile: a Dask config YAML (e.g. deploy/slurm.yaml) with the jobqueue.<kind> keys "
        "(cores, memory, walltime, account, queue, job-script-prologue, ...)",
    )
    scheduler: str | None = param(
        None,
        "address (tcp://host:port, tls://...) or scheduler-file of a running Dask scheduler "
        "(wins over the cluster kind)",
    )
    workers: int | None = param(None, "local worker processes (default: one per core)", low=1)
    jobs: int | None = param(None, "batch jobs to submit (default 1)", low=1)
    min_jobs: int | None = param(None, "adaptive scaling: fewest batch jobs", low=0)
    max_jobs: int | None = param(None, "adaptive scaling: most batch jobs (turns adaptive scaling on)", low=1)
    tls: bool | None = param(
        None, "TLS with certificates made for this run (default: on for batch systems, off locally)"
    )

    def get(self, name: str) -> Any:
        """The option ``name``: the field if set, else ``phstore.cluster.<name>`` from Dask config."""
        import dask.config

        value = getattr(self, name, None)
        return value if value is not None else dask.config.get(f"phstore.cluster.{name.replace('_', '-')}")
