"""PH featurize throughput on workers launched through a real SLURM vs a LocalCluster (issue 6).

Starts a one-node SLURM on this machine (``tests/slurm.py``: installs Debian's slurm-wlm and
munge when missing, needs root), then featurizes the same 216-atom Tersoff frames with phstore on
a LocalCluster of 1 and 2 workers and on 1 and 2 single-core SLURM jobs (``--cluster slurm``,
TLS on, as the SLURM profile does by default). Each cluster is started and warmed before timing;
the time from asking for SLURM workers to having them warm is printed separately.

    python benchmarks/featurize_cluster.py [--frames 64] [--chunk-size 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from featurize_ph import _warm
from harness import add_work_option, make_store, phstore_run, started_cluster, work_dir

from phstore import open_store
from phstore.cluster import ClusterOptions
from phstore.descriptors import PH

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.slurm import OneNodeSlurm, install  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--chunk-size", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    add_work_option(ap)
    args = ap.parse_args()
    reason = install()
    if reason:
        raise SystemExit(f"cannot run SLURM here: {reason}")
    with work_dir(args.work) as work, ExitStack() as stack:
        store = make_store(work, args.frames, args.chunk_size)
        n = open_store(store).n_snapshots("C216")
        print(f"{n} frames of 216 atoms, chunks of {args.chunk_size}")
        slurm = OneNodeSlurm(cpus=4).start()
        stack.callback(slurm.stop)
        os.environ["SLURM_CONF"] = str(slurm.conf)
        # jobs inherit this environment: their workers unpickle the warm-up from featurize_ph
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")])
        )
        profile = slurm.profile(work / "jobs" / "slurm.yaml")
        setups = {
            "local 1 worker": (1, None),
            "local 2 workers": (2, None),
            "slurm 1 job": (1, ClusterOptions(kind="slurm", profile=profile, jobs=1)),
            "slurm 2 jobs": (2, ClusterOptions(kind="slurm", profile=profile, jobs=2)),
        }
        rates: dict[str, list[float]] = {k: [] for k in setups}
        for label, (workers, options) in setups.items():
            with ExitStack() as cluster:
                client, startup = started_cluster(cluster, workers, _warm, options)
                print(
                    f"{label}: {workers} worker(s) warm {startup:5.1f} s after asking"
                    + (f" ({client.scheduler.address.split(':')[0]})" if options else "")
                )
                for _ in range(args.rounds):
                    rates[label].append(phstore_run(store, client, PH(), n)[0].rate)
        base = float(np.median(rates["local 1 worker"]))
        for label, r in rates.items():
            m = float(np.median(r))
            print(
                f"{label:16s} {m:6.2f} frames/s (rounds: {', '.join(f'{x:.2f}' for x in r)}) "
                f"= {m / base:4.2f}x local 1 worker"
            )


if __name__ == "__main__":
    main()
