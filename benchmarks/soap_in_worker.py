"""Is dscribe's SOAP slower inside a Dask worker than in a plain process? (issue 3's open question)

On a lent 16-core machine the worker's descriptor time ran 5–25 % above the bare loop's, while on
a 2-vCPU VM the two match. This runs the same store chunks, interleaved, four ways and prints the
fewest and the median ms per frame of each (noise only adds time, so compare the minima):

* ``worker task``: ``featurize_shard`` on a LocalCluster worker, its descriptor time only;
* ``worker bare``: the bare dscribe loop on that worker;
* ``process bare``: the bare loop in a fresh spawned process (no Dask in it);
* ``process task``: ``featurize_shard`` in that process.

    python benchmarks/soap_in_worker.py [--frames 480] [--chunk-size 32] [--natoms 216] [--work DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from featurize_soap_schnet import bare_soap
from harness import add_work_option, make_store, started_cluster, work_dir

from phstore.descriptors import SOAP
from phstore.featurize import featurize_shard
from phstore.store import FeatureStore


def _fresh_copy(store: Path, name: str, stack: ExitStack) -> tuple[Path, str, str]:
    """A copy of ``store`` with an empty SOAP group (every row pending), whose writer lock this
    process holds while ``stack`` lasts; (path, collection, the lock's token for the tasks)."""
    copy = store.parent / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    stack.callback(shutil.rmtree, copy, True)
    s = FeatureStore(copy, mode="a")
    stack.enter_context(s.writer("benchmark"))
    collection = s.collections[0]
    d = SOAP()
    s.ensure_descriptor(collection, d.group, d.provenance(), d.variables(int(s.collection_attrs(collection)["natoms"])))
    return copy, collection, str(s.writer_token)


def task(store: str, collection: str, shard: int, writer: str) -> float:
    """ms per frame of the descriptor inside one ``featurize_shard``."""
    report = featurize_shard(store, collection, SOAP(), shard, writer=writer)
    return 1000 * report.compute_seconds / report.computed


def bare(store: str, collection: str, rows: slice) -> float:
    """ms per frame of featurize_soap_schnet's bare dscribe loop on the snapshots ``rows``."""
    frames = FeatureStore(store).atoms(collection, rows)
    start = time.perf_counter()
    bare_soap(frames)
    return 1000 * (time.perf_counter() - start) / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=480)
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--natoms", type=int, default=216)
    add_work_option(parser)
    args = parser.parse_args()
    with work_dir(args.work) as work, ExitStack() as stack:
        store = make_store(work, args.frames, args.chunk_size, args.natoms)
        on_worker, collection, worker_token = _fresh_copy(store, "worker.zarr", stack)
        in_process, _, process_token = _fresh_copy(store, "process.zarr", stack)
        s, group = FeatureStore(on_worker), SOAP().group
        shards = [s.shard_rows(collection, group, k) for k in range(s.n_shards(collection, group))]
        client, _ = started_cluster(stack, 1, lambda: bare(str(store), collection, shards[0]))
        pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(1))
        pool.apply(bare, (str(store), collection, shards[0]))
        times: dict[str, list[float]] = {"worker task": [], "worker bare": [], "process bare": [], "process task": []}
        for shard, rows in enumerate(shards):
            on = client.submit(task, str(on_worker), collection, shard, worker_token, pure=False)
            times["worker task"].append(on.result())
            times["worker bare"].append(client.submit(bare, str(store), collection, rows, pure=False).result())
            times["process bare"].append(pool.apply(bare, (str(store), collection, rows)))
            times["process task"].append(pool.apply(task, (str(in_process), collection, shard, process_token)))
        print(
            f"{len(shards)} shards of {s.shard_size(collection, group)} frames of {args.natoms} atoms, interleaved; "
            "ms per frame:"
        )
        for label, t in times.items():
            print(f"  {label:13s} min {min(t):6.1f}  median {np.median(t):6.1f}")


if __name__ == "__main__":
    main()
