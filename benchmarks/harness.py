"""What every featurize benchmark shares: demo frames in a store, warmed-up LocalClusters,
timed phstore runs, bare loops in fresh processes, worker memory.

phstore on ``w`` workers is measured against ``w`` bare loops run side by side, so that the
ratio is per core and what the machine loses running ``w`` processes at once counts on both
sides. Machines drift: this VM by a few per cent over minutes, a lent 16-core GPU machine by
50 % between runs a minute apart. So where there are cores for both, the bare loops run at the
same time as phstore and only their frames within phstore's run count (:func:`compare`);
elsewhere the two run back to back in rounds of alternating order. Either way the benchmarks
report the median of per-round ratios, and also the ratio of their best chunks: the bare loop
times its frames in batches of the store's chunk size, phstore's tasks time themselves, and the
fewest ms per frame of any batch is the figure noise touches least (it only adds time).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
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
    parser.add_argument(
        "--work",
        type=Path,
        help="keep generated frames and stores in DIR and reuse them "
        "on later runs with the same sizes (default: a temporary directory)",
    )


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


def add_bare_options(parser: argparse.ArgumentParser) -> None:
    """The hidden options of a benchmark's own ``--bare`` processes (see :class:`BareLoops`)."""
    parser.add_argument("--bare", nargs="+", help=argparse.SUPPRESS)  # internal: what the bare loop runs on
    parser.add_argument("--bare-limit", type=int, help=argparse.SUPPRESS)  # internal: frames, then stop


def add_sequential_option(parser: argparse.ArgumentParser) -> None:
    """``--sequential``: run the bare loops and phstore one after the other (see :func:`compare`)."""
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="run the bare loops and phstore one after "
        "the other, alternating the order by round (default: at the same time, side by side, "
        "when the machine has two cores per worker, so that both see the same machine speed)",
    )


def side_by_side(args: argparse.Namespace, workers: Sequence[int]) -> bool:
    """Whether :func:`compare` runs the bare loops beside phstore: not ``--sequential``, and the
    machine has a core for every worker and every bare loop."""
    return not args.sequential and 2 * max(workers) <= (os.cpu_count() or 1)


def serve_bare(frames: Sequence, size: int, work: Callable[[Sequence], object], limit: int | None) -> None:
    """The body of a ``--bare`` process (one of :class:`BareLoops`): ``work`` (warmed up on the
    first frame) on ``frames`` in batches of ``size``, as phstore's tasks take store chunks,
    cycling through the frames until ``limit`` frames are done or standard input closes. Prints
    ``ready`` once warm, then one JSON line: every batch's (start, end, frames) on
    ``time.monotonic``'s clock (one clock for all processes of a Linux machine), CPU ms per frame
    and peak RSS MiB."""
    work(frames[:1])
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    batches, done, cpu = [], 0, time.process_time()
    while not stop.is_set() and (limit is None or done < limit):
        lo = done % len(frames)
        batch = frames[lo : lo + (size if limit is None else min(size, limit - done))]
        start = time.monotonic()
        work(batch)
        batches.append((start, time.monotonic(), len(batch)))
        done += len(batch)
    print(
        json.dumps({"batches": batches, "cpu_ms": 1000 * (time.process_time() - cpu) / max(done, 1), "rss": peak_rss()})
    )


@dataclass
class Timing:
    """A measured run: frames/s, and the fewest ms per frame of any chunk (phstore) or batch
    (bare loops), the figure that noise touches least (it only adds time)."""

    rate: float
    best_ms: float


class BareLoops:
    """``copies`` processes of ``script --bare ARGS`` (each runs :func:`serve_bare`) side by
    side, fresh and single-threaded, in the environment phstore's workers get
    (:func:`worker_env` under this process's environment, as local workers get it), so that only
    phstore's own work differs. With glibc's default malloc a bare dscribe loop faulted in ~820
    pages per 216-atom frame or none, depending on its heap's history (14.5 or 12.8 ms per
    frame), and the slow case made phstore look faster than the loop.

    ``with BareLoops(...) as loops:`` returns once every copy is warm; :meth:`stop` ends them and
    counts their frames in a window. With ``limit`` each copy stops by itself after that many
    frames. ``peak_rss``: the largest peak RSS (MiB) of the copies, once stopped.
    """

    def __init__(self, script: str, args: Sequence[str], copies: int, limit: int | None = None) -> None:
        self.script, self.args, self.copies, self.limit = script, list(args), copies, limit

    def __enter__(self) -> "BareLoops":
        env = worker_env() | os.environ | {"OMP_NUM_THREADS": "1"}
        limit = [] if self.limit is None else ["--bare-limit", str(self.limit)]
        self.procs = [
            subprocess.Popen(
                [sys.executable, self.script, "--bare", *self.args, *limit],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(self.copies)
        ]
        for proc in self.procs:
            while (line := proc.stdout.readline()) and line.strip() != "ready":
                pass
            if not line:
                self._failed(proc)
        return self

    def _failed(self, proc: subprocess.Popen) -> None:
        """Raise for a copy that ended without its report (its standard error went to ours)."""
        raise subprocess.CalledProcessError(proc.wait(), proc.args)

    def stop(self, window: tuple[float, float] | None = None) -> Timing:
        """End the loops (with ``limit``: wait for them) and time what they did in ``window``
        (``time.monotonic`` start and end; default: each copy's own first to last batch). A
        batch cut by the window counts in proportion to the time inside it. Prints their mean
        wall and CPU ms per frame (CPU below wall: the loops waited for the machine)."""
        rates, bests, cpus, rss = [], [], [], []
        for proc in self.procs:
            if self.limit is None:
                proc.stdin.close()
            out = proc.stdout.read()
            if proc.wait():
                self._failed(proc)
            report = json.loads(out.splitlines()[-1])
            batches = np.array(report["batches"])
            t0, t1 = window or (batches[0, 0], batches[-1, 1])
            inside = np.clip(np.minimum(batches[:, 1], t1) - np.maximum(batches[:, 0], t0), 0, None)
            rates.append(float((batches[:, 2] * inside / (batches[:, 1] - batches[:, 0])).sum() / (t1 - t0)))
            whole = batches[(batches[:, 0] >= t0) & (batches[:, 1] <= t1)]
            bests.append(1000 * float(np.min((whole[:, 1] - whole[:, 0]) / whole[:, 2])) if len(whole) else np.nan)
            cpus.append(report["cpu_ms"])
            rss.append(report["rss"])
        print(
            f"    {self.copies} bare loop(s), ms/frame: wall {np.mean([1000 / r for r in rates]):.1f}, "
            f"CPU {np.mean(cpus):.1f}"
        )
        self.peak_rss = max(rss)
        return Timing(sum(rates), float(np.nanmin(bests)))

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.stdin.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def peak_rss() -> float:
    """This process's peak resident memory, MiB. On Linux ``VmHWM``: ``ru_maxrss`` of a process
    started by fork and exec also counts its parent's peak before the fork (a benchmark's client
    with a GiB of frames made every worker and bare loop look that big)."""
    status = Path("/proc/self/status")
    if status.exists():
        return (
            next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM:")) / 1024
        )
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def started_cluster(
    stack: ExitStack, workers: int, warm: Callable[[], None], options: ClusterOptions | None = None
) -> tuple[Client, float]:
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


def phstore_run(
    store: Path, client: Client, descriptor: Descriptor, n_frames: int
) -> tuple[Timing, tuple[float, float]]:
    """``featurize`` on a fresh copy of the store: its timing (frames/s; the fewest ms per frame
    of any task plus the workers' mean time per frame outside tasks) and its window (start and end
    on ``time.monotonic``'s clock). Prints where the workers' time went (the
    descriptor, wall and its threads' CPU time; the tasks' store reads and writes; the rest:
    scheduling, idle workers)."""
    copy = store.parent / "store-run.zarr"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    workers = len(client.scheduler_info()["workers"])  # before: batch-job workers may leave after the run
    start = time.monotonic()
    report = featurize(copy, descriptor, client, progress=False)
    end = time.monotonic()
    elapsed = end - start
    assert report.computed == n_frames and not report.failures and not report.errors, report.failures[:3]
    per_frame = {
        "descriptor": report.compute_seconds,
        "descriptor on CPU": report.compute_cpu_seconds,
        "store I/O": report.task_seconds - report.compute_seconds,
        "outside tasks": elapsed * workers - report.task_seconds,
    }
    print(
        f"    {workers} worker(s), worker ms/frame: "
        + ", ".join(f"{k} {1000 * v / n_frames:.1f}" for k, v in per_frame.items())
    )
    chunk_size = FeatureStore(copy).chunk_size
    if n_frames % (chunk_size * workers):
        print(
            f"    ({n_frames} frames in chunks of {chunk_size} do not split evenly over {workers} worker(s): "
            "workers idle at the end count as time outside tasks; take --frames a multiple of both)"
        )
    best = min(c.seconds / (c.computed + len(c.failed)) for c in report.shards if c.computed + len(c.failed))
    return Timing(n_frames / elapsed, 1000 * (best + per_frame["outside tasks"] / n_frames)), (start, end)


def compare(
    label: str,
    rounds: int,
    loops: Callable[[int, int | None], BareLoops],
    runs: dict[int, Callable[[], tuple[Timing, tuple[float, float]]]],
    targets: dict[int, float],
    together: bool,
    frames: int,
) -> None:
    """Per round and number of workers ``w``: ``loops(w, limit)`` (``w`` bare loops side by side)
    and ``runs[w]()`` (phstore on ``w`` workers, with its window). Prints phstore's rate against
    the bare loops' (per core, as both use ``w`` cores) per round and as a median against
    ``targets[w]``, and the same for the best chunks. ``together`` (see :func:`side_by_side`):
    the loops cycle through the frames while phstore runs, and what they did in phstore's window
    counts, so both sides see the same machine (a 16-core GPU machine's speed changed by 50 %
    between runs a minute apart; this VM's by a few per cent over minutes). Otherwise
    each of the ``w`` loops does ``frames`` frames before or after phstore's run, odd rounds
    phstore first, so that a steady drift favours neither side. Cores slow each other down
    (shared caches and memory bandwidth, turbo, a VM's vCPUs) for both sides alike; how much,
    the bare loops show: their rate side by side against the fewest loops' is printed as the
    machine's scaling."""
    print(
        f"{label}: bare loops and phstore " + ("at the same time, side by side" if together else "one after the other")
    )

    def alone(w: int) -> Timing:
        with loops(w, frames) as bare:
            return bare.stop()

    rows = []
    for i in range(rounds):
        rows.append({})
        for w, run in runs.items():
            if together:
                with loops(w, None) as bare:
                    r, window = run()
                    b = bare.stop(window)
            elif i % 2:
                r, b = run()[0], alone(w)
            else:
                b = alone(w)
                r = run()[0]
            rows[-1][w] = (b, r)
        print(
            f"  {label} round: "
            + "; ".join(
                f"{w} bare loop(s) {b.rate:6.2f}, phstore on {w} worker(s) {r.rate:6.2f} frames/s "
                f"-> {r.rate / b.rate:4.2f}x"
                for w, (b, r) in rows[-1].items()
            )
        )
    for w, target in targets.items():
        ratio = float(np.median([row[w][1].rate / row[w][0].rate for row in rows]))
        print(
            f"{label}, phstore on {w} worker(s): median {ratio:.3f}x the rate of {w} bare loop(s) side by side "
            f"({'meets' if ratio >= target else 'MISSES'} the {target}x target per core)"
        )
        bare_best, best = (np.nanmin([row[w][i].best_ms for row in rows]) for i in (0, 1))
        print(
            f"{label}, best chunk on {w} worker(s): {best:.1f} ms/frame (task + time outside tasks) vs the bare "
            f"loops' {bare_best:.1f}: {bare_best / best:.3f}x per core "
            f"({'meets' if bare_best / best >= target else 'MISSES'} {target}x)"
        )
    one, *more = sorted(targets)
    for w in more:
        scaling = float(np.median([row[w][0].rate / row[one][0].rate for row in rows]))
        print(
            f"this machine: {w} bare loops side by side run {scaling:.2f}x as fast as {one} "
            f"({scaling * one / w:.2f}x per core)"
        )
