"""Ingest of one large extended-XYZ trajectory: in one process, and parsed on Dask workers.

A trajectory of ``--frames`` jittered carbon cells of ``--natoms`` atoms is written once into
``--work``; each mode then ingests it into a new store in a fresh process, which prints its
frames/s and the peak resident memory of itself and (on workers) of each worker. The file is
read as a stream in blocks of frames, so memory stays bounded whatever the file's size.

    python benchmarks/ingest_parallel.py --frames 20000 --natoms 64            # the rate, 1 vs 2 workers
    python benchmarks/ingest_parallel.py --frames 80000 --natoms 512 --modes workers   # ~2 GB: memory
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from harness import add_work_option, peak_rss, work_dir, worker_peak_rss

from phstore.units import CARBON_MASS_U, CM3_PER_A3, GRAMS_PER_U


def write_trajectory(path: Path, frames: int, natoms: int, seed: int = 0) -> None:
    """``frames`` distinct labelled frames of ``natoms`` carbon atoms (a jittered cubic lattice)
    at 2.4 g/cm³, written in pieces (bounded memory)."""
    side_atoms = round(natoms ** (1 / 3))
    if side_atoms**3 != natoms:
        raise SystemExit(f"--natoms must be a cube number, not {natoms}")
    side = (natoms * CARBON_MASS_U * GRAMS_PER_U / (2.4 * CM3_PER_A3)) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(side_atoms)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5
    rng = np.random.default_rng(seed)
    header = f'{natoms}\nLattice="{side:.6f} 0 0 0 {side:.6f} 0 0 0 {side:.6f}" Properties=species:S:1:pos:R:3 '
    with open(path, "w") as f:
        for _ in range(frames):
            pos = (grid + rng.uniform(-0.1, 0.1, grid.shape)) * side / side_atoms
            lines = "\n".join(f"C {x:.6f} {y:.6f} {z:.6f}" for x, y, z in pos)
            f.write(f'{header}energy={-7.0 * natoms + rng.normal(0, 5):.6f} pbc="T T T"\n{lines}\n')


def cpu_seconds() -> float:
    """CPU seconds this process has used (user and system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(mode: str, source: Path, store: Path, workers: int) -> dict[str, float]:
    """Ingest ``source`` into the new ``store`` in this process (``single``) or on a LocalCluster
    of ``workers`` one-thread workers (``workers``)."""
    from phstore.ingest import ingest

    if mode == "single":
        start, cpu = time.perf_counter(), cpu_seconds()
        report = ingest(store, [source], progress=False)
        seconds = time.perf_counter() - start
        return {"frames/s": report.n_added / seconds, "CPU ms/frame": 1e3 * (cpu_seconds() - cpu) / report.n_added,
                "peak MiB": peak_rss()}  # fmt: skip
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        with Client(cluster) as client:
            worker_cpu = client.run(cpu_seconds)  # workers up before the clock starts
            start, cpu = time.perf_counter(), cpu_seconds()
            report = ingest(store, [source], progress=False, client=client)
            seconds = time.perf_counter() - start
            cpu = cpu_seconds() - cpu  # this process: the writer, and the scheduler beside it
            worker_cpu = sum(client.run(cpu_seconds).values()) - sum(worker_cpu.values())
            worker_peak = worker_peak_rss(client)
    n = report.n_added
    return {
        "frames/s": n / seconds,
        "CPU ms/frame": 1e3 * (cpu + worker_cpu) / n,
        "of which writer+scheduler": 1e3 * cpu / n,
        "peak MiB": peak_rss(),
        "worker peak MiB": worker_peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--natoms", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["single", "workers"], choices=["single", "workers"])
    parser.add_argument("--run", help=argparse.SUPPRESS)  # a mode run in this fresh process
    add_work_option(parser)
    args = parser.parse_args()
    with work_dir(args.work) as work:
        source = work / f"traj-{args.frames}x{args.natoms}.xyz"
        if args.run:
            store = work / f"ingest-{args.run}.zarr"
            shutil.rmtree(store, ignore_errors=True)
            print(json.dumps(run(args.run, source, store, args.workers)))
            shutil.rmtree(store, ignore_errors=True)
            return
        if not source.exists():
            write_trajectory(source, args.frames, args.natoms)
        print(f"{source.name}: {source.stat().st_size / 2**20:.0f} MiB, {args.frames} frames of {args.natoms} atoms")
        results = {}
        for mode in args.modes:
            out = subprocess.run(
                [sys.executable, __file__, "--run", mode, "--work", str(work), "--frames", str(args.frames),
                 "--natoms", str(args.natoms), "--workers", str(args.workers)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  {mode:8s} " + "  ".join(f"{k} {v:.1f}" for k, v in results[mode].items()), flush=True)
        if len(results) == 2:
            ratio = results["workers"]["frames/s"] / results["single"]["frames/s"]
            cores = len(os.sched_getaffinity(0))
            bound = min(args.workers, cores) * results["single"]["CPU ms/frame"] / results["workers"]["CPU ms/frame"]
            # the rate if every core were busy with the CPU time one frame takes in that mode
            print(
                f"  {args.workers} workers / one process: {ratio:.2f}x "
                f"(limit of the CPU time on {cores} cores: {bound:.2f}x)"
            )


if __name__ == "__main__":
    main()
