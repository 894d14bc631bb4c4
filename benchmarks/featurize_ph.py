"""Throughput of PH featurization: a bare serial HomCloud loop vs phstore on 1 and 2 Dask workers.

All three process the same 216-atom Tersoff melt-quench frames (generated here with LAMMPS, read
from a store). The bare loop is HomCloud's periodic alpha filtration plus numpy's histogram2d in
one warm process. phstore runs go through the whole product path (store reads, isolated HomCloud
child, region writes) on a LocalCluster that is started and warmed up before timing; the start-up
cost is printed separately. Targets (issue 2): 1 worker ≥ 0.95× bare, 2 workers ≥ 1.8× bare.

    python benchmarks/featurize_ph.py [--frames 160] [--chunk-size 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from phstore import open_store
from phstore.cluster import connect
from phstore.compat import import_homcloud
from phstore.descriptors import PH
from phstore.featurize import featurize
from phstore.generate import GenerateConfig, MeltQuench, generate
from phstore.ingest import ingest


def make_store(work: Path, n_frames: int, chunk_size: int) -> Path:
    per_run = MeltQuench().scaled(0.2)
    runs = -(-n_frames // sum(per_run.frames))
    config = replace(GenerateConfig.demo(), densities=(2.4,), runs=runs, crystal=False)
    generate(work / "data", config, progress=False)
    store = work / "store.zarr"
    ingest(store, [work / "data"], chunk_size=chunk_size, progress=False)
    return store


def bare_loop(store: Path, threads: str | None) -> float:
    """Frames/s of HomCloud + histogram2d in a fresh process on the stored positions.

    ``threads`` sets OMP_NUM_THREADS (None: the library default, which on this machine lets
    HomCloud use more than one core).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")}
    if threads:
        env["OMP_NUM_THREADS"] = threads
    out = subprocess.run([sys.executable, __file__, "--bare", str(store)], env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def _bare(store: Path) -> float:
    hc = import_homcloud()
    frames = open_store(store).frames("C216").load()
    positions, cells = frames.positions.values, frames.cell.values
    hc.PDList.from_alpha_filtration(positions[0] % np.diag(cells[0]), periodicity=[(0, L) for L in np.diag(cells[0])])
    start = time.perf_counter()
    for pos, cell in zip(positions, cells):
        L = np.diag(cell)
        pd = hc.PDList.from_alpha_filtration(pos % L, periodicity=[(0, x) for x in L]).dth_diagram(1)
        hist, _, _ = np.histogram2d(pd.births, pd.deaths, bins=128, range=[[0, 8], [0, 8]])
        _ = hist / hist.sum()
    return len(positions) / (time.perf_counter() - start)


def _warm() -> None:
    """Start this worker thread's HomCloud child (imports take seconds) with one small frame."""
    from ase.build import bulk

    PH().compute(bulk("C", "diamond", a=3.567, cubic=True).repeat(3))


def phstore_run(store: Path, n_frames: int, workers: int) -> tuple[float, float]:
    """(frames/s, start-up seconds) of `featurize` on a fresh copy of the store."""
    copy = store.parent / f"store-{workers}w.zarr"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    t0 = time.perf_counter()
    with connect(n_workers=workers) as client:
        client.wait_for_workers(workers)
        addresses = list(client.scheduler_info()["workers"])
        client.gather([client.submit(_warm, workers=[a], pure=False) for a in addresses])
        startup = time.perf_counter() - t0
        start = time.perf_counter()
        report = featurize(copy, PH(), client, progress=False)
        elapsed = time.perf_counter() - start
    assert report.computed == n_frames and not report.failures, report.failures[:3]
    return report.computed / elapsed, startup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)  # internal: run the bare loop on a store
    args = parser.parse_args()
    if args.bare:
        print(_bare(args.bare))
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), args.frames, args.chunk_size)
        n = open_store(store).n_snapshots("C216")
        bare = bare_loop(store, None)
        bare1 = bare_loop(store, "1")
        print(f"frames: {n} x 216 atoms (Tersoff a-C, 2.4 g/cm3), chunk size {args.chunk_size}")
        print(f"bare serial HomCloud loop          : {bare:6.2f} frames/s (library default threads)")
        print(f"bare serial HomCloud loop, 1 thread: {bare1:6.2f} frames/s (OMP_NUM_THREADS=1, as in a Dask worker)")
        for workers, target in ((1, 0.95), (2, 1.8)):
            rate, startup = phstore_run(store, n, workers)
            verdict = "meets" if rate / bare >= target else "MISSES"
            print(f"phstore, {workers} worker(s)              : {rate:6.2f} frames/s = {rate / bare:4.2f}x bare "
                  f"({verdict} the {target}x target), {rate / bare1:4.2f}x the 1-thread loop; "
                  f"cluster start + warm-up {startup:.1f} s")


if __name__ == "__main__":
    main()
