"""Per-frame CPU time of phstore's periodic alpha engine against HomCloud, side by side in one run.

Frames: Tersoff melt-quench a-C generated here (liquid to quenched, evenly spaced over one run),
216 atoms at 1.5, 2.4 and 3.5 g/cm³ and 512 atoms at 2.4 g/cm³. Every frame is computed in turn,
``--repeats`` times, interleaved, in this one process: HomCloud (``PDList.from_alpha_filtration``
of the box, as the homcloud engine's child runs it), the native engine on the whole filtration,
and the native engine truncated at 8 Å² (the PH descriptor's default); each followed by the H1
histogram. CPU time (``process_time``) per frame: median over repeats, then over frames. Targets
(issue 20): native ≥ 6× HomCloud at 216 atoms, ≥ 8× at 512.

Then where the native engine's time goes (the filtration: images, qhull, values, orbits,
boundary matrix; the reduction), qhull alone on the same image points (its floor), and the
reduction by numba (what phstore uses) against HomCloud's phat fed the same matrix from Python.

    python benchmarks/ph_engine.py [--frames 6] [--repeats 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import ase.io
import numpy as np
from harness import add_work_option, work_dir
from scipy.spatial import Delaunay

from phstore.compat import import_homcloud
from phstore.generate import GenerateConfig, generate
from phstore.ph import filtration as engine
from phstore.ph import periodic_alpha_diagram, periodic_alpha_filtration, persistence_pairs
from phstore.ph.vectorize import histogram

CASES = ((216, 1.5), (216, 2.4), (216, 3.5), (512, 2.4))


def frames_of(work: Path, count: int) -> dict[tuple[int, float], list]:
    """``count`` frames evenly spaced over one generated run of each case."""
    config = replace(GenerateConfig.demo(), runs=1, large_natoms=512, crystal=False)
    files = generate(work / "ph-engine-data", config, progress=False)
    groups: dict[tuple[int, float], list] = {key: [] for key in CASES}
    for path in files:
        for atoms in ase.io.iread(path):
            groups.get((len(atoms), round(float(atoms.info["density"]), 1)), []).append(atoms)
    return {key: [frames[int(i)] for i in np.linspace(0, len(frames) - 1, count)] for key, frames in groups.items()}


def cpu_ms(fn) -> float:
    start = time.process_time()
    fn()
    return 1000 * (time.process_time() - start)


def homcloud(atoms) -> None:
    hc = import_homcloud()
    L = np.diag(atoms.cell.array)
    pdlist = hc.PDList.from_alpha_filtration(
        atoms.positions % L, periodicity=[(0, x) for x in L], save_boundary_map=False, save_suppl_info=False
    )
    pd = pdlist.dth_diagram(1)
    np.histogram2d(pd.births, pd.deaths, bins=128, range=[[0, 8], [0, 8]])


def native(atoms, max_value: float) -> None:
    d = periodic_alpha_diagram(atoms.positions, atoms.cell.array, max_value=max_value)
    histogram(d.degree(1), 128, (0.0, 8.0), 1e-5)


def phat_reduce(f) -> None:
    """HomCloud's phat (twist) on the filtration's matrix, columns set from Python as HomCloud does."""
    import homcloud.phat_ext as phat

    matrix = phat.Matrix(len(f.dims))
    for j, dim in enumerate(f.dims.tolist()):
        matrix.set_dim_col(j, dim, f.indices[f.indptr[j] : f.indptr[j + 1]].tolist())
    matrix.reduce("phat-twist")
    matrix.birth_death_pairs()


def stages(atoms) -> dict[str, float]:
    """CPU ms of the native engine's parts on one frame (full filtration)."""
    cell = engine._Cell.of(atoms.positions, atoms.cell.array)
    f = periodic_alpha_filtration(atoms.positions, atoms.cell.array)
    xyz = engine._images(cell, f.skin, 10**7).xyz
    return {
        "filtration": cpu_ms(lambda: periodic_alpha_filtration(atoms.positions, atoms.cell.array)),
        "qhull alone": cpu_ms(lambda: Delaunay(xyz)),
        "reduction (numba)": cpu_ms(lambda: persistence_pairs(f.dims, f.values, f.indptr, f.indices)),
        "reduction (phat)": cpu_ms(lambda: phat_reduce(f)),
        "image points": float(len(xyz)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=6, help="frames per case (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per frame (default %(default)s)")
    add_work_option(parser)
    args = parser.parse_args()
    with work_dir(args.work) as work:
        cases = frames_of(work, args.frames)
    warm = cases[CASES[0]][0]
    (
        homcloud(warm),
        native(warm, np.inf),
        native(warm, 8.0),
        phat_reduce(  # imports, numba's cache
            periodic_alpha_filtration(warm.positions, warm.cell.array)
        ),
    )
    methods = {
        "homcloud": homcloud,
        "native": lambda a: native(a, np.inf),
        "native, truncated 8 Å²": lambda a: native(a, 8.0),
    }
    print(
        f"{args.frames} frames per case x {args.repeats} repeats, CPU ms per frame (median over repeats, "
        "then frames; min-max over frames)"
    )
    print(f"{'case':<22}" + "".join(f"{m:>26}" for m in methods) + f"{'speed-up':>12}{'truncated':>11}")
    for key in CASES:
        per_frame = {m: [] for m in methods}
        for atoms in cases[key]:
            times = {m: [] for m in methods}
            for _ in range(args.repeats):
                for m, fn in methods.items():
                    times[m].append(cpu_ms(lambda: fn(atoms)))
            for m in methods:
                per_frame[m].append(float(np.median(times[m])))
        med = {m: float(np.median(v)) for m, v in per_frame.items()}
        cells = "".join(f"{med[m]:>10.1f} ({min(v):>5.1f}-{max(v):>5.1f})" for m, v in per_frame.items())
        print(
            f"{key[0]} atoms, {key[1]} g/cm3".ljust(22)
            + cells
            + f"{med['homcloud'] / med['native']:>11.1f}x{med['homcloud'] / med['native, truncated 8 Å²']:>10.1f}x"
        )
    print("\nnative engine, whole filtration, CPU ms per frame (median over frames):")
    for key in CASES:
        rows = [stages(a) for a in cases[key]]
        parts = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
        print(
            f"  {key[0]} atoms, {key[1]} g/cm3: "
            + ", ".join(f"{k} {v:.0f}" if k == "image points" else f"{k} {v:.1f}" for k, v in parts.items())
        )


if __name__ == "__main__":
    main()
