"""Where the Dask work runs: an embedded LocalCluster by default, or an existing scheduler."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import dask
from distributed import Client, LocalCluster


@contextmanager
def connect(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Client]:
    """Yield a Dask client.

    With ``scheduler`` (``tcp://host:port`` or a scheduler-file path ending in ``.json``)
    attach to that cluster; otherwise start a LocalCluster on loopback with one single-threaded
    worker process per core (``n_workers``, default ``os.cpu_count()``), closed on exit.
    """
    if scheduler:
        kwargs = {"scheduler_file": scheduler} if scheduler.endswith(".json") else {"address": scheduler}
        with Client(**kwargs) as client:
            yield client
        return
    n = n_workers or os.cpu_count() or 1
    # Worker processes start descriptor children with subprocess; keep them non-daemonic-safe
    # and quiet about the nanny's restarts of killed workers.
    with dask.config.set({"distributed.worker.daemon": False}):
        with LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", memory_limit="auto",
        ) as cluster, Client(cluster) as client:
            yield client
