"""Throughput of PH featurization: bare loops of the native engine vs phstore on 1 and 2 Dask workers.

All process the same 216-atom Tersoff melt-quench frames (generated here with LAMMPS, read from a
store). A bare loop is the native periodic alpha engine (``phstore.ph``, truncated at 8 Å² as
the descriptor's default) plus the normalised H1 histogram in one warm single-threaded process.
phstore runs go through the whole product path (store reads, the engine in the worker, region
and diagram writes) on a LocalCluster that is started and warmed up before timing; the start-up
cost is printed separately. Targets (issue 20): 1 worker ≥ 0.9× a bare loop, 2 workers ≥ 1.8×
one (0.9× two bare loops side by side; what the machine loses running two processes at once
counts on both sides, printed last). Peak worker memory is printed at the end.

    python benchmarks/featurize_ph.py [--frames 128] [--chunk-size 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from harness import (
    BareLoops,
    add_bare_options,
    add_sequential_option,
    add_work_option,
    compare,
    make_store,
    phstore_run,
    serve_bare,
    side_by_side,
    started_cluster,
    work_dir,
    worker_peak_rss,
)

from phstore import open_store
from phstore.descriptors import PH, PHParams
from phstore.ph import periodic_alpha_diagram
from phstore.ph.vectorize import histogram
from phstore.store import DEFAULT_CHUNK_SIZE


def _bare(store: Path, chunk_size: int, limit: int | None) -> None:
    frames = open_store(store).frames("C216").load()
    p = PHParams()

    def work(batch: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for pos, cell in batch:
            d = periodic_alpha_diagram(pos, cell, max_value=p.range[1])
            histogram(d.degree(p.histogram_degree), p.bins, p.range, p.min_persistence)

    serve_bare(list(zip(frames.positions.values, frames.cell.values)), chunk_size, work, limit)


def _warm() -> None:
    """Load the engine's compiled code in this worker with one small frame."""
    from ase.build import bulk

    PH().compute(bulk("C", "diamond", a=3.567, cubic=True).repeat(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
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
            print(f"cluster of {w} worker(s): start + warm-up {startup:.1f} s (not in the rates)")
        compare(
            "ph",
            args.rounds,
            lambda copies, limit: BareLoops(
                __file__, [str(store), "--chunk-size", str(args.chunk_size)], copies, limit
            ),
            {w: (lambda c=c: phstore_run(store, c, PH(), n)) for w, (c, _) in clients.items()},
            {1: 0.9, 2: 0.9},
            side_by_side(args, list(clients)),
            n,
        )
        print(
            "peak worker RSS: "
            + ", ".join(f"{w} worker(s) {worker_peak_rss(c):.0f} MiB" for w, (c, _) in clients.items())
        )


if __name__ == "__main__":
    main()
