"""Throughput and memory of SOAP (dscribe) and SchNet (schnetpack) featurization at 216 and 512 atoms.

For each size, Tersoff melt-quench frames are generated (LAMMPS) into a store. Per descriptor,
a bare loop (dscribe / schnetpack called directly on the stored frames, one single-threaded
process with the workers' malloc settings, so that only phstore's own work differs) is compared
with phstore on 1 and 2 (``--workers``) Dask workers (store reads, per-atom and atom-mean
writes), started for that descriptor only: a SOAP worker never loads torch, as in a real SOAP
run. phstore on w workers is compared with w bare loops side by side, run at the same time as
phstore where the machine has 2w cores (see ``harness.compare``). Target (issue 3): ≥ 0.95×
the bare loops per core. Memory: the peak RSS of the worker processes against the size of all
per-atom output, which no process may hold whole.

The SchNet model is untrained (0 epochs): the embedding costs the same as a trained one's.

    python benchmarks/featurize_soap_schnet.py [--frames 128] [--chunk-size 32] [--rounds 2] [--natoms 216 512]
        [--descriptors soap schnet] [--workers 1 2] [--sequential] [--work DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from distributed import Client
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
from phstore.descriptors import SOAP, Descriptor, SchNet
from phstore.store import DEFAULT_CHUNK_SIZE, FeatureStore
from phstore.training.params import SchNetConfig
from phstore.training.train import train


def _frames(store: Path):
    s = FeatureStore(store)
    coll = s.collections[0]
    return s.atoms(coll, slice(0, s.n_snapshots(coll)))


@lru_cache(maxsize=1)
def _dscribe_soap():
    from dscribe.descriptors import SOAP as DScribeSOAP

    return DScribeSOAP(species=["C"], r_cut=4.1, n_max=8, l_max=9, sigma=0.16, periodic=True)


def bare_soap(frames: Sequence[Atoms]) -> None:
    """The bare loop's work: dscribe's SOAP built directly (the paper's parameters) on each
    frame, its float32 copy and atom-mean (what phstore stores)."""
    for atoms in frames:
        x = _dscribe_soap().create(atoms)
        _ = x.astype(np.float32), x.mean(axis=0)


def _bare_soap(store: Path, chunk_size: int, limit: int | None) -> None:
    serve_bare(_frames(store), chunk_size, bare_soap, limit)


def _bare_schnet(store: Path, chunk_size: int, limit: int | None, model: Path, batch_atoms: int) -> None:
    """schnetpack's SchNet built from the model directory, run on the same forward passes as
    phstore's descriptor (``batch_atoms`` atoms each), with the atom-means phstore stores."""
    import torch

    from phstore.descriptors.schnet import architecture, atom_batches, build_schnet, converter, embed
    from phstore.modeldir import load_model_dir, load_module

    model_dir = load_model_dir(model)
    params = model_dir.config["params"]
    net = load_module(build_schnet(*architecture(params)), model_dir.state())
    convert = converter(params["cutoff"])

    def work(batch: list) -> None:
        with torch.no_grad():
            for group in atom_batches([len(a) for a in batch], batch_atoms):
                frames = [batch[i] for i in group]
                x = embed(net, convert(frames)).numpy()
                _ = [e.mean(axis=0) for e in np.split(x, np.cumsum([len(a) for a in frames])[:-1])]

    serve_bare(_frames(store), chunk_size, work, limit)


def _warm_soap() -> None:
    """Import dscribe in this worker and build the SOAP object before timing."""
    from ase.build import bulk

    SOAP().compute(bulk("C", "diamond", a=3.567, cubic=True).repeat(2))


def _warm_schnet() -> None:
    """Import torch and schnetpack in this worker before timing."""
    import phstore.compat

    phstore.compat.import_schnetpack()


_WARM = {"soap": _warm_soap, "schnet": _warm_schnet}


def _case(name: str, store: Path, natoms: int, work: Path) -> tuple[Descriptor, tuple[str, ...]]:
    """The descriptor ``name`` for ``store`` and the arguments of its ``--bare`` run."""
    if name == "soap":
        return SOAP(), ("soap", str(store))
    model = work / f"schnet{natoms}"
    train("schnet", store, f"C{natoms}", model, SchNetConfig(epochs=0), progress=False)
    schnet = SchNet.from_model(model)
    return schnet, ("schnet", str(store), str(model), str(schnet.batch_atoms))


def plain_write_ms(client: Client, directory: Path, frame_bytes: int, chunk_size: int, n_frames: int) -> float:
    """ms per frame that writing ``n_frames`` raw per-atom outputs of ``frame_bytes``, one new
    plain file per chunk, takes on a worker: what any program that keeps the per-atom output
    pays on this machine (part of phstore's "store I/O"). As much as a run writes, because this
    VM's ext4 charged the writer 2-3 ms of CPU per 10 MB while the pages only sat in the cache and
    ~20 ms once their writeback ran."""

    def write() -> float:
        data = np.random.default_rng(0).bytes(frame_bytes * chunk_size)
        chunks = -(-n_frames // chunk_size)
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            start = time.perf_counter()
            for i in range(chunks):
                (Path(tmp) / str(i)).write_bytes(data)
            return 1000 * (time.perf_counter() - start) / (chunks * chunk_size)

    return float(np.median(list(client.run(write).values())))


def _measure(name: str, natoms: int, store: Path, work: Path, clients: dict[int, Client], args) -> None:
    """Print ``name``'s throughput against the bare loop and the memory figures at ``natoms``."""
    n = open_store(store).n_snapshots(f"C{natoms}")
    descriptor, bare_args = _case(name, store, natoms, work)
    print(f"{name}, frames: {n} x {natoms} atoms (Tersoff a-C, 2.4 g/cm3), chunk size {args.chunk_size}")
    frame_bytes = natoms * descriptor.variables(natoms)["per_atom"].shape[1] * 4
    started_loops = []

    def loops(copies: int, limit: int | None) -> BareLoops:
        bare = BareLoops(__file__, [*bare_args, "--chunk-size", str(args.chunk_size)], copies, limit)
        started_loops.append(bare)
        return bare

    runs = {w: (lambda c=c: phstore_run(store, c, descriptor, n)) for w, c in clients.items()}
    compare(
        f"{name} {natoms} atoms",
        args.rounds,
        loops,
        runs,
        {w: 0.95 for w in clients},
        side_by_side(args, list(clients)),
        n,
    )
    write = plain_write_ms(clients[max(clients)], work, frame_bytes, args.chunk_size, n)
    print(
        f"{name} {natoms} atoms: writing the raw per-atom output, a new plain file per chunk, takes "
        f"{write:.2f} ms/frame on a worker (part of phstore's store I/O)"
    )
    peak = {w: worker_peak_rss(c) for w, c in clients.items()}
    print(
        f"{name} {natoms} atoms: per-atom output of all frames {n * frame_bytes / 2**20:.0f} MiB; "
        f"peak worker RSS {', '.join(f'{w} worker(s) {peak[w]:.0f} MiB' for w in peak)}; "
        f"bare loop peak RSS {max(b.peak_rss for b in started_loops):.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=128, help="frames per size")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="frames per store chunk: one task")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--natoms", type=int, nargs="+", default=[216, 512])
    parser.add_argument("--descriptors", nargs="+", choices=list(_WARM), default=list(_WARM))
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="cluster sizes to compare "
        "(each with as many bare loops side by side; at the same time as phstore when the "
        "machine has 2 cores per worker of the largest)",
    )
    add_sequential_option(parser)
    add_work_option(parser)
    add_bare_options(parser)  # --bare soap STORE | schnet STORE MODEL BATCH_ATOMS
    args = parser.parse_args()
    if args.bare:
        kind, store, *schnet = args.bare
        if kind == "soap":
            _bare_soap(Path(store), args.chunk_size, args.bare_limit)
        else:
            _bare_schnet(Path(store), args.chunk_size, args.bare_limit, Path(schnet[0]), int(schnet[1]))
        return
    with work_dir(args.work) as work:
        stores = {natoms: make_store(work, args.frames, args.chunk_size, natoms) for natoms in args.natoms}
        for name in args.descriptors:
            with ExitStack() as stack:  # workers warmed for this descriptor only: SOAP's never load torch
                started = {w: started_cluster(stack, w, _WARM[name]) for w in sorted(set(args.workers))}
                print()
                for w, (client, startup) in started.items():
                    print(
                        f"{name}: cluster of {w} worker(s): start + warm-up {startup:.1f} s, "
                        f"worker RSS {worker_peak_rss(client):.0f} MiB"
                    )
                for natoms, store in stores.items():
                    _measure(name, natoms, store, work, {w: c for w, (c, _) in started.items()}, args)


if __name__ == "__main__":
    main()
