"""What every featurize benchmark shares: demo frames in a store, warmed-up LocalClusters,
timed phstore runs, bare loops in fresh processes, worker memory.

phstore on ``w`` workers is measured against ``w`` bare loops run side by side, so that the
ratio is per core and what the machine loses running ``w`` processes at once counts on both
sides. This VM's speed drifts by tens of per cent within minutes (so did a 16-core GPU
machine's), so the benchmarks measure the bare loops and the phstore runs back to back in
rounds and report the median of per-round ratios, and also the ratio of their best chunks: the
bare loop times its frames in batches of the store's chunk size, phstore's tasks time
themselves, and the fewest ms per frame of any batch is the figure noise touches least (it only
adds time).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator, Sequence

import ase.io
import numpy as np
from distributed import Client

from phstore.cluster import ClusterOptions, connect, worker_env
from phstore.descriptors import Descriptor
from phstore.featurize import featurize
from phstore.generate import GenerateConfig, MeltQuench, generate
from phstore.ingest import ingest
from phstore.store import FeatureStore


def add_work_option(parser: argparse.ArgumentParser) -> None:
    """``--work DIR``: where generated frames and stores live (see ``work_dir``)."""
    parser.add_argument("--work", type=Path, help="keep generated frames and stores in DIR and reuse them "
                        "on later runs with the same sizes (default: a temporary directory)")


@contextmanager
def work_dir(path: Path | None) -> Iterator[Path]:
    """``path`` (created, kept afterwards) or a temporary directory removed on exit."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def make_store(work: Path, n_frames: int, chunk_size: int, natoms: int = 216) -> Path:
    """``n_frames`` Tersoff melt-quench frames of ``natoms`` atoms at 2.4 g/cm³ (the first of
    whole generated runs, as one trajectory) in a store (collection ``C<natoms>``); a store
    already made in ``work`` with the same sizes is reused."""
    store = work / f"store{natoms}-{n_frames}x{chunk_size}.zarr"
    if store.exists():
        return store
    per_run = MeltQuench().scaled(0.2)
    runs = -(-n_frames // sum(per_run.frames))
    config = replace(GenerateConfig.demo(), densities=(2.4,), runs=runs, natoms=natoms, crystal=False)
    files = generate(work / f"data{natoms}-{runs}runs", config, progress=False)
    frames = work / f"frames{natoms}-{n_frames}.xyz"
    ase.io.write(frames, list(islice((a for f in files for a in ase.io.iread(f)), n_frames)), format="extxyz")
    ingest(store, [frames], chunk_size=chunk_size, progress=False)
    return store


def timed_batches(frames: Sequence, size: int, work: Callable[[Sequence], object]) -> tuple[float, float, float]:
    """Run ``work`` (warmed up on the first frame) on ``frames`` in batches of ``size``, as
    phstore's tasks take store chunks: (frames/s over all, fewest ms per frame of any batch,
    CPU ms per frame of this process)."""
    work(frames[:1])
    best, start, cpu = np.inf, time.perf_counter(), time.process_time()
    for lo in range(0, len(frames), size):
        t = time.perf_counter()
        work(frames[lo:lo + size])
        best = min(best, (time.perf_counter() - t) / len(frames[lo:lo + size]))
    return len(frames) / (time.perf_counter() - start), 1000 * best, 1000 * (time.process_time() - cpu) / len(frames)


def bare_loop(script: str, *args: str, copies: int = 1) -> tuple[tuple[float, float], float]:
    """Run ``copies`` processes of ``script --bare ARGS`` side by side, each fresh and
    single-threaded, in the environment phstore's workers get (:func:`worker_env` under this
    process's environment, as for local workers), so that the ratio measures phstore's own work.
    With glibc's default malloc a bare dscribe loop faulted in ~820 pages per 216-atom frame or
    none, depending on its heap's history (14.5 or 12.8 ms per frame), and the slow case made
    phstore look faster than the loop. The last line of each must be what :func:`report_bare`
    prints. Prints their mean wall and CPU ms per frame (CPU below wall: the loops waited for
    the machine); returns ((frames/s of all together, best ms/frame of any), largest peak RSS
    MiB)."""
    env = worker_env() | os.environ | {"OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, script, "--bare", *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(copies)]
    reports = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, out, err)
        reports.append([float(v) for v in out.split()[-4:]])
    rates, bests, cpus, rss = zip(*reports)
    print(f"    {copies} bare loop(s), ms/frame: wall {np.mean([1000 / r for r in rates]):.1f}, CPU {np.mean(cpus):.1f}")
    return (sum(rates), min(bests)), max(rss)


def peak_rss() -> float:
    """This process's peak resident memory, MiB. On Linux ``VmHWM``: ``ru_maxrss`` of a process
    started by fork and exec also counts its parent's peak before the fork (a benchmark's client
    with a GiB of frames made every worker and bare loop look that big)."""
    status = Path("/proc/self/status")
    if status.exists():
        return next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM:")) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def report_bare(timing: tuple[float, float, float]) -> None:
    """The last line a ``--bare`` run prints: :func:`timed_batches`'s figures and the peak RSS (MiB)."""
    print(*timing, peak_rss())


def started_cluster(stack: ExitStack, workers: int, warm: Callable[[], None],
                    options: ClusterOptions | None = None) -> tuple[Client, float]:
    """A cluster of ``workers`` workers (default: a LocalCluster) whose every worker has run
    ``warm`` (imports, children); (client, seconds from asking to warm)."""
    t0 = time.perf_counter()
    client = stack.enter_context(connect(options or ClusterOptions(workers=workers)))
    client.wait_for_workers(workers)
    addresses = list(client.scheduler_info()["workers"])
    client.gather([client.submit(warm, workers=[a], pure=False) for a in addresses])
    return client, time.perf_counter() - t0


def worker_peak_rss(client: Client) -> float:
    """Largest peak RSS (MiB) of the cluster's worker processes."""
    rss = client.run(peak_rss)
    return max(rss.values())


def phstore_run(store: Path, client: Client, descriptor: Descriptor, n_frames: int) -> tuple[float, float]:
    """``featurize`` on a fresh copy of the store: (frames/s, fewest ms per frame of any task plus
    the workers' mean time per frame outside tasks). Prints where the workers' time went (the
    descriptor, wall and its threads' CPU time; the tasks' store reads and writes; the rest:
    scheduling, idle workers)."""
    copy = store.parent / "store-run.zarr"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    workers = len(client.scheduler_info()["workers"])  # before: batch-job workers may leave after the run
    start = time.perf_counter()
    report = featurize(copy, descriptor, client, progress=False)
    elapsed = time.perf_counter() - start
    assert report.computed == n_frames and not report.failures and not report.errors, report.failures[:3]
    per_frame = {"descriptor": report.compute_seconds, "descriptor on CPU": report.compute_cpu_seconds,
                 "store I/O": report.task_seconds - report.compute_seconds,
                 "outside tasks": elapsed * workers - report.task_seconds}
    print(f"    {workers} worker(s), worker ms/frame: "
          + ", ".join(f"{k} {1000 * v / n_frames:.1f}" for k, v in per_frame.items()))
    chunk_size = FeatureStore(copy).chunk_size
    if n_frames % (chunk_size * workers):
        print(f"    ({n_frames} frames in chunks of {chunk_size} do not split evenly over {workers} worker(s): "
              "workers idle at the end count as time outside tasks; take --frames a multiple of both)")
    best = min(c.seconds / (c.computed + len(c.failed)) for c in report.chunks if c.computed + len(c.failed))
    return n_frames / elapsed, 1000 * (best + per_frame["outside tasks"] / n_frames)


def compare(label: str, rounds: int, bare: Callable[[int], tuple[float, float]],
            runs: dict[int, Callable[[], tuple[float, float]]], targets: dict[int, float]) -> None:
    """Per round and number of workers ``w``: ``bare(w)`` (``w`` bare loops side by side), then
    ``runs[w]()`` (phstore on ``w`` workers), each giving frames/s and best ms/frame. Prints
    phstore's rate against the bare loops' (per core, as both use ``w`` cores) per round and
    as a median against ``targets[w]``, and the same for the best chunks, which a noisy machine
    touches least (noise only adds time). Cores slow each other down (shared caches and memory
    bandwidth, turbo, a VM's vCPUs) for both sides alike; how much, the bare loops show: their
    rate side by side against the fewest loops' is printed as the machine's scaling. Odd rounds
    run phstore first, so that a machine speeding up or slowing down steadily (a few per cent
    over minutes on this VM) favours neither side."""
    rows = []
    for i in range(rounds):
        rows.append({})
        for w, run in runs.items():
            if i % 2:
                r = run()
                b = bare(w)
            else:
                b = bare(w)
                r = run()
            rows[-1][w] = (b, r)
        print(f"  {label} round: " + "; ".join(
            f"{w} bare loop(s) {b[0]:6.2f}, phstore on {w} worker(s) {r[0]:6.2f} frames/s -> {r[0] / b[0]:4.2f}x"
            for w, (b, r) in rows[-1].items()))
    for w, target in targets.items():
        ratio = float(np.median([row[w][1][0] / row[w][0][0] for row in rows]))
        print(f"{label}, phstore on {w} worker(s): median {ratio:.3f}x the rate of {w} bare loop(s) side by side "
              f"({'meets' if ratio >= target else 'MISSES'} the {target}x target per core)")
        bare_best, best = (min(row[w][i][1] for row in rows) for i in (0, 1))
        print(f"{label}, best chunk on {w} worker(s): {best:.1f} ms/frame (task + time outside tasks) vs the bare "
              f"loops' {bare_best:.1f}: {bare_best / best:.3f}x per core ({'meets' if bare_best / best >= target else 'MISSES'} {target}x)")
    one, *more = sorted(targets)
    for w in more:
        scaling = float(np.median([row[w][0][0] / row[one][0][0] for row in rows]))
        print(f"this machine: {w} bare loops side by side run {scaling:.2f}x as fast as {one} "
              f"({scaling * one / w:.2f}x per core)")
