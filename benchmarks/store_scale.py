"""How the store's costs grow with its size: synthetic stores of 10³…10⁶ 64-atom snapshots,
built through phstore's own ingest, queried as users and featurize do.

Printed per size: ingest rate (frames/s), files in the store, ``sel`` by one density (an eighth
of the store) and by one trajectory's first 100 frames, bytes read loading the positions and
energies of the density selection against those rows' stored bytes, ``info``, featurize
planning (``pending_shards`` on a descriptor group with every tenth chunk pending), and
``verify`` of the frames (of a store built in this run). The files count the frames table and
that group, whose values (16 float32 a snapshot, a stand-in for SOAP means) are written shard
by shard, as featurize tasks write them. Then each figure's growth exponent
(log-log fit over the sizes) and its value extrapolated to 10⁷ snapshots from that fit.

The frames are jittered simple-cubic lattices (nearest neighbours ≥ 1.6 Å, so none is rejected
as overlapping) in files of up to 1000 frames, eight densities 1.8…2.5 g/cm³; every frame is
distinct, so none is skipped as a duplicate. Stores are kept in ``--work`` and reused.

    python benchmarks/store_scale.py --sizes 1000 10000 100000 --work /tmp/scale
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
from harness import add_work_option, work_dir

from phstore.featurize import pending_shards
from phstore.ingest import ingest
from phstore.store import DONE, PENDING, FeatureStore, VariableSpec, open_store
from phstore.units import CARBON_MASS_U, CM3_PER_A3, GRAMS_PER_U
from phstore.verify import verify_store

NATOMS = 64
DENSITIES = np.round(np.arange(1.8, 2.55, 0.1), 2)
PER_FILE = 1000
COLLECTION = f"C{NATOMS}"


def write_frames(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` distinct frames of ``NATOMS`` carbon atoms in extxyz files of up to ``PER_FILE``."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5
    n_files = max(len(DENSITIES), -(-n // PER_FILE))
    sizes = np.diff(np.linspace(0, n, n_files + 1).astype(int))
    for i, size in enumerate(sizes):
        density = DENSITIES[i % len(DENSITIES)]
        side = (NATOMS * CARBON_MASS_U * GRAMS_PER_U / (density * CM3_PER_A3)) ** (1 / 3)
        spacing = side / 4
        blocks = []
        for _ in range(size):
            pos = (grid + rng.uniform(-0.1, 0.1, grid.shape)) * spacing
            energy = -7.0 * NATOMS + rng.normal(0, 5)
            lines = "\n".join(f"C {x:.6f} {y:.6f} {z:.6f}" for x, y, z in pos)
            blocks.append(
                f'{NATOMS}\nLattice="{side:.6f} 0 0 0 {side:.6f} 0 0 0 {side:.6f}" '
                f'Properties=species:S:1:pos:R:3 energy={energy:.6f} density={density} pbc="T T T"\n{lines}\n'
            )
        (folder / f"run{i:05d}_d{density}.xyz").write_text("".join(blocks))


def seconds(fn: Callable[[], object], repeat: int = 3) -> float:
    """Median wall time of ``fn`` over ``repeat`` calls (s)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bytes_read(fn: Callable[[], object]) -> int:
    """Bytes this process read (``rchar``: page cache included) while ``fn`` ran."""

    def rchar() -> int:
        return int(dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())["rchar"])

    before = rchar()
    fn()
    return rchar() - before


def count_files(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def build(work: Path, n: int) -> tuple[Path, float]:
    """The store of ``n`` snapshots (made once in ``work``) and its ingest rate (frames/s; nan
    when it was reused)."""
    store = work / f"scale-{n}.zarr"
    if (store / "zarr.json").exists():
        return store, float("nan")
    frames = work / f"frames-{n}"
    if not frames.exists():
        write_frames(frames, n)
    start = time.perf_counter()
    report = ingest(store, [frames], progress=False)
    rate = n / (time.perf_counter() - start)
    if report.n_added != n:
        raise RuntimeError(f"ingest added {report.n_added} of {n} frames: {report.rejected[:3]}")
    return store, rate


def add_group(path: Path) -> str:
    """A descriptor group of 16 float32 values a snapshot, written shard by shard as featurize
    tasks write them, whose status marks every tenth chunk pending, the rest done (committed
    through the store, as the coordinator commits)."""
    store = FeatureStore(path, mode="r+")
    group = "bench-0"
    with store.writer("benchmark"):
        variables = {"mean": VariableSpec(("feature",), (16,), "float32", np.nan)}
        store.ensure_descriptor(
            COLLECTION, group, {"descriptor": "bench", "params": {}, "versions": {}, "key": "0"}, variables
        )
        n = store.n_snapshots(COLLECTION)
        rng = np.random.default_rng(0)
        for shard in range(store.n_shards(COLLECTION, group)):
            rows = store.shard_rows(COLLECTION, group, shard)
            store.write_rows(COLLECTION, group, rows, {"mean": rng.random((rows.stop - rows.start, 16), np.float32)})
        status = np.full(n, DONE, dtype=np.int8)
        status[store.chunk_of(np.arange(n)) % 10 == 0] = PENDING
        store.commit_status(COLLECTION, group, np.arange(n), status)
    return group


def measure(work: Path, n: int) -> dict[str, float]:
    path, rate = build(work, n)
    out = {"ingest frames/s": rate}
    fresh = np.isfinite(rate)  # a reused store may hold the PH group already: verify would read it too
    out["verify frames s"] = seconds(lambda: verify_store(path, progress=False), repeat=1) if fresh else np.nan
    groups = open_store(path).descriptor_groups(COLLECTION)  # a reused store has it already
    group = next(iter(groups)) if groups else add_group(path)
    store = open_store(path)
    out["files"] = count_files(path)
    density = float(DENSITIES[0])
    out["sel density s"] = seconds(lambda: store.sel(COLLECTION, density=density))
    trajectory = str(store.column(COLLECTION, "trajectory")[0])
    out["sel 100 frames s"] = seconds(lambda: store.sel(COLLECTION, trajectory=trajectory, frames=slice(0, 100)))
    selection = store.sel(COLLECTION, density=density)
    share = selection.sizes["snapshot"] / n
    stored = sum(store.zarr_group(COLLECTION)[f"frames/{v}"].nbytes_stored() for v in ("positions", "energy_per_atom"))
    read = bytes_read(lambda: (selection["positions"].values, selection["energy_per_atom"].values))
    out["read / selected bytes"] = read / (share * stored)
    out["info s"] = seconds(store.info)
    out["planning s"] = seconds(lambda: pending_shards(store, COLLECTION, group))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000], help="snapshots per store")
    add_work_option(parser)
    args = parser.parse_args()
    with work_dir(args.work) as work:
        rows = {}
        for n in args.sizes:
            rows[n] = measure(work, n)
            print(f"{n:>9d} " + "  ".join(f"{k} {v:.4g}" for k, v in rows[n].items()), flush=True)
    names = list(rows[args.sizes[0]])
    print(f"\n{'snapshots':>24s}" + "".join(f"{n:>12.0e}" for n in args.sizes) + f"{'exponent':>10s}{'at 1e7':>12s}")
    sizes = np.array(args.sizes, dtype=float)
    for name in names:
        values = np.array([rows[n][name] for n in args.sizes])
        finite = np.isfinite(values) & (values > 0)
        if finite.sum() >= 2:
            slope, intercept = np.polyfit(np.log(sizes[finite]), np.log(values[finite]), 1)
            fit = f"{slope:>10.2f}{np.exp(intercept) * 1e7**slope:>12.4g}"
        else:
            fit = ""
        print(f"{name:>24s}" + "".join(f"{v:>12.4g}" for v in values) + fit)


if __name__ == "__main__":
    main()
