"""Throughput of PH featurization: a bare serial HomCloud loop vs phstore on 1 and 2 Dask workers.

All three process the same 216-atom Tersoff melt-quench frames (generated here with LAMMPS, read
from a store). The bare loop is HomCloud's periodic alpha filtration plus numpy's histogram2d in
one warm single-threaded process. phstore runs go through the whole product path (store reads,
isolated HomCloud child, region writes) on a LocalCluster that is started and warmed up before
timing; the start-up cost is printed separately. Targets (issue 2): 1 worker ≥ 0.95× bare,
2 workers ≥ 1.8× bare, here 0.9× two bare loops side by side (what the machine loses running
two processes at once counts on both sides; printed last).

    python benchmarks/featurize_ph.py [--frames 96] [--chunk-size 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from harness import (BareLoops, add_bare_options, add_sequential_option, add_work_option, compare, make_store,
                     phstore_run, serve_bare, side_by_side, started_cluster, work_dir)
from phstore import open_store
from phstore.compat import import_homcloud
from phstore.descriptors import PH


def _bare(store: Path, chunk_size: int, limit: int | None) -> None:
    hc = import_homcloud()
    frames = open_store(store).frames("C216").load()

    def work(batch: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for pos, cell in batch:
            L = np.diag(cell)
            pd = hc.PDList.from_alpha_filtration(pos % L, periodicity=[(0, x) for x in L]).dth_diagram(1)
            hist, _, _ = np.histogram2d(pd.births, pd.deaths, bins=128, range=[[0, 8], [0, 8]])
            _ = hist / hist.sum()

    serve_bare(list(zip(frames.positions.values, frames.cell.values)), chunk_size, work, limit)


def _warm() -> None:
    """Start this worker thread's HomCloud child (imports take seconds) with one small frame."""
    from ase.build import bulk

    PH().compute(bulk("C", "diamond", a=3.567, cubic=True).repeat(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    add_sequential_option(parser)
    add_work_option(parser)
    add_bare_options(parser)  # --bare STORE
    args = parser.parse_args()
    if args.bare:
        _bare(Path(args.bare[0]), args.chunk_size, args.bare_limit)
        return
    with work_dir(args.work) as work, ExitStack() as stack:
        store = make_store(work, args.frames, args.chunk_size)
        n = open_store(store).n_snapshots("C216")
        print(f"frames: {n} x 216 atoms (Tersoff a-C, 2.4 g/cm3), chunk size {args.chunk_size}, {args.rounds} rounds")
        clients = {w: started_cluster(stack, w, _warm) for w in (1, 2)}
        for w, (_, startup) in clients.items():
            print(f"cluster of {w} worker(s): start + HomCloud warm-up {startup:.1f} s (not in the rates)")
        compare(
            "ph", args.rounds,
            lambda copies, limit: BareLoops(__file__, [str(store), "--chunk-size", str(args.chunk_size)], copies, limit),
            {w: (lambda c=c: phstore_run(store, c, PH(), n)) for w, (c, _) in clients.items()},
            {1: 0.95, 2: 0.9}, side_by_side(args, list(clients)), n,
        )


if __name__ == "__main__":
    main()
