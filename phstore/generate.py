"""Demo data of the shape of the amorphous-carbon dataset, by LAMMPS + Tersoff carbon melt-quench.

The real data (VASP LDA melt-quench of amorphous carbon, Zenodo 10.5281/zenodo.7905585) cannot be
downloaded here, so we re-run its protocol with the classical Tersoff (1988) carbon potential:
a simple-cubic start lattice at the target density, NVT (Nose-Hoover) with a 1 fs step,
heat 300 -> 9000 K, hold 9000 K, cool 9000 -> 5000 K, hold 5000 K, quench 5000 -> 300 K, with
snapshots evenly spaced in every stage but the heating. A diamond set is 300 K NVT MD of diamond.

Output is extended XYZ in the Zenodo layout (``{N}atom_amorphous/run{k}.xyz``,
``{N}atom_crystal/diamond.xyz``, ``{N_large}atom_amorphous/run1.xyz``). Every frame carries the
potential energy (eV), forces (eV/Angstrom) and the info keys ``density`` (g/cm^3, the target),
``process`` (stage label), ``temperature`` (K, thermostat target at the snapshot), ``run`` and
``seed`` (the LAMMPS velocity seed).

Units throughout: time in fs or ps as the name says, temperature in K, density in g/cm^3,
length in Angstrom, energy in eV.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from tqdm import tqdm

from phstore.compat import import_lammps, lammps_potential
from phstore.units import CARBON_MASS_U, density_gcc

PAPER_DENSITIES = (1.5, 1.7, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.2, 3.4, 3.5)
"""Densities of the amorphous sets (g/cm^3)."""
PAPER_CRYSTAL_DENSITIES = (2.4, 2.6, 2.8, 3.0, 3.2, 3.4, 3.5)
"""Densities of the diamond set (g/cm^3)."""


@dataclass(frozen=True)
class Stage:
    """One NVT stage: the thermostat target ramps linearly from ``t_start`` to ``t_stop`` (K)
    over ``steps`` MD steps; ``frames`` snapshots are taken evenly spaced, the last at its end."""

    label: str
    t_start: float
    t_stop: float
    steps: int
    frames: int


@dataclass(frozen=True)
class MeltQuench:
    """The melt-quench protocol (paper §2.1). Times in fs / ps, temperatures in K.

    ``frames`` are the snapshots of the hot hold, the cooling, the mid hold and the quench;
    the heating gives none.
    """

    timestep_fs: float = 1.0
    heat_ps: float = 2.0
    hold_hot_ps: float = 3.0
    cool_ps: float = 2.0
    hold_mid_ps: float = 2.0
    quench_ps: float = 2.0
    t_start: float = 300.0
    t_hot: float = 9000.0
    t_mid: float = 5000.0
    t_end: float = 300.0
    frames: tuple[int, int, int, int] = (30, 100, 25, 100)
    tdamp_fs: float = 100.0

    def scaled(self, factor: float) -> MeltQuench:
        """Copy with every stage duration and frame count times ``factor`` (at least 1 frame each)."""
        return replace(
            self,
            heat_ps=self.heat_ps * factor,
            hold_hot_ps=self.hold_hot_ps * factor,
            cool_ps=self.cool_ps * factor,
            hold_mid_ps=self.hold_mid_ps * factor,
            quench_ps=self.quench_ps * factor,
            frames=tuple(max(1, round(n * factor)) for n in self.frames),
        )

    def stages(self) -> tuple[Stage, ...]:
        """The five stages in order, with step counts from the durations and ``timestep_fs``."""
        hot, mid = f"{self.t_hot:g}K", f"{self.t_mid:g}K"
        spec = [
            ("heat", self.t_start, self.t_hot, self.heat_ps, 0),
            (f"hold_{hot}", self.t_hot, self.t_hot, self.hold_hot_ps, self.frames[0]),
            (f"cool_{hot}_{mid}", self.t_hot, self.t_mid, self.cool_ps, self.frames[1]),
            (f"hold_{mid}", self.t_mid, self.t_mid, self.hold_mid_ps, self.frames[2]),
            (f"quench_{mid}_{self.t_end:g}K", self.t_mid, self.t_end, self.quench_ps, self.frames[3]),
        ]
        return tuple(
            Stage(label, t0, t1, _steps(ps, self.timestep_fs, frames), frames) for label, t0, t1, ps, frames in spec
        )


def _steps(duration_ps: float, timestep_fs: float, frames: int) -> int:
    steps = round(duration_ps * 1000.0 / timestep_fs)
    if steps < max(frames, 1):
        raise ValueError(
            f"a {duration_ps} ps stage at {timestep_fs} fs has {steps} steps, fewer than its {frames} frames"
        )
    return steps


def _cube_root(n: int) -> int | None:
    k = round(n ** (1 / 3))
    return k if n > 0 and k**3 == n else None


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate. Defaults are the paper's counts (see :meth:`paper`).

    * ``densities`` (g/cm^3), ``natoms`` (a perfect cube: simple-cubic start), ``runs`` independent
      runs per density with different velocity seeds, all with ``protocol``.
    * ``large_natoms``: one extra run per density with this many atoms (a perfect cube); None skips it.
    * ``crystal``: a diamond set of ``natoms`` atoms (must be 8*k^3) at ``crystal_densities``:
      ``crystal_ps`` ps of NVT MD at ``crystal_temperature`` K, ``crystal_frames`` snapshots each.
    * ``seed``: every velocity seed is derived from it.
    """

    densities: tuple[float, ...] = PAPER_DENSITIES
    natoms: int = 216
    runs: int = 6
    protocol: MeltQuench = field(default_factory=MeltQuench)
    large_natoms: int | None = 512
    crystal: bool = True
    crystal_densities: tuple[float, ...] = PAPER_CRYSTAL_DENSITIES
    crystal_ps: float = 2.0
    crystal_frames: int = 80
    crystal_temperature: float = 300.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name, n in (("natoms", self.natoms), ("large_natoms", self.large_natoms)):
            if n is not None and _cube_root(n) is None:
                raise ValueError(
                    f"{name}={n} is not a perfect cube (k^3 atoms are needed for a simple-cubic start lattice)"
                )
        if self.crystal and (self.natoms % 8 or _cube_root(self.natoms // 8) is None):
            raise ValueError(
                f"natoms={self.natoms} is not 8*k^3 (8 times a perfect cube), so the diamond set cannot use it "
                "(set crystal=False)"
            )
        if self.runs < 1 or not self.densities or min(self.densities) <= 0:
            raise ValueError("need runs >= 1 and at least one density, all > 0")

    @classmethod
    def paper(cls) -> GenerateConfig:
        """The paper's data: 216 atoms x 11 densities x 6 runs x 255 frames = 16,830 frames,
        512 atoms x 11 densities x 1 run = 2,805 frames, diamond 7 densities x 80 = 560 frames."""
        return cls()

    @classmethod
    def demo(cls) -> GenerateConfig:
        """A small set (3 densities x 2 runs of 216 atoms, protocol scaled to 1/5, 51 frames each,
        plus diamond at 3.5 g/cm^3 with 8 frames: 314 frames) that takes seconds on 2 cores."""
        return cls(
            densities=(1.5, 2.4, 3.5),
            runs=2,
            protocol=MeltQuench().scaled(0.2),
            large_natoms=None,
            crystal_densities=(3.5,),
            crystal_ps=0.4,
            crystal_frames=8,
        )


def cell_length(natoms: int, density: float) -> float:
    """Edge (Angstrom) of the cubic cell holding ``natoms`` carbon atoms at ``density`` (g/cm^3)."""
    return (density_gcc(natoms * CARBON_MASS_U, 1.0) / density) ** (1 / 3)  # volume in Å³, cubed root


def cell_density(natoms: int, volume: float) -> float:
    """Density (g/cm^3) of ``natoms`` carbon atoms in ``volume`` Angstrom^3."""
    return density_gcc(natoms * CARBON_MASS_U, volume)


def velocity_seed(seed: int, natoms: int, run: int) -> int:
    """LAMMPS velocity seed (1 .. 2^31-1) of run ``run`` (0 = diamond set) of the ``natoms`` set."""
    return int(np.random.SeedSequence([seed, natoms, run]).generate_state(1)[0]) % (2**31 - 2) + 1


@dataclass(frozen=True)
class _Job:
    """One independent MD: a ``lattice`` ("sc" or "diamond") start of ``natoms`` at ``density``."""

    file: str
    lattice: str
    natoms: int
    density: float
    run: int
    seed: int
    timestep_fs: float
    tdamp_fs: float
    stages: tuple[Stage, ...]


@dataclass
class _Frames:
    """Snapshots of one job: ``positions``/``forces`` (frames, N, 3), ``energy`` (frames,) in eV."""

    cell: float
    positions: np.ndarray
    forces: np.ndarray
    energy: np.ndarray
    process: list[str]
    temperature: list[float]


def _jobs(config: GenerateConfig) -> list[_Job]:
    """All MD jobs, grouped by output file, densities in config order within a file."""
    p = config.protocol
    jobs = []
    sets = [(config.natoms, config.runs)] + ([(config.large_natoms, 1)] if config.large_natoms else [])
    for natoms, runs in sets:
        for run in range(1, runs + 1):
            seed = velocity_seed(config.seed, natoms, run)
            for density in config.densities:
                file = f"{natoms}atom_amorphous/run{run}.xyz"
                jobs.append(_Job(file, "sc", natoms, density, run, seed, p.timestep_fs, p.tdamp_fs, p.stages()))
    if config.crystal:
        stage = Stage(
            f"diamond_{config.crystal_temperature:g}K",
            config.crystal_temperature,
            config.crystal_temperature,
            _steps(config.crystal_ps, p.timestep_fs, config.crystal_frames),
            config.crystal_frames,
        )
        seed = velocity_seed(config.seed, config.natoms, 0)
        for density in config.crystal_densities:
            file = f"{config.natoms}atom_crystal/diamond.xyz"
            jobs.append(_Job(file, "diamond", config.natoms, density, 0, seed, p.timestep_fs, p.tdamp_fs, (stage,)))
    return jobs


def _run_job(job: _Job) -> _Frames:
    """Run one MD job in a fresh serial LAMMPS instance and return its snapshots."""
    lmp = import_lammps().lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        length = cell_length(job.natoms, job.density)
        k = _cube_root(job.natoms if job.lattice == "sc" else job.natoms // 8)
        t0 = job.stages[0].t_start
        for command in (
            "units metal",
            "atom_style atomic",
            "boundary p p p",
            f"lattice {job.lattice} {length / k!r}",
            f"region box block 0 {k} 0 {k} 0 {k}",
            "create_box 1 box",
            "create_atoms 1 box",
            f"mass 1 {CARBON_MASS_U}",
            "pair_style tersoff",
            f"pair_coeff * * {lammps_potential('SiC.tersoff')} C",
            "neighbor 1.0 bin",
            "neigh_modify every 1 delay 0 check yes",
            f"timestep {job.timestep_fs / 1000.0!r}",
            f"velocity all create {t0} {job.seed} dist gaussian mom yes",
            "thermo_style custom step pe",
            "thermo 1000000",
        ):
            lmp.command(command)
        boxlo, boxhi = lmp.extract_box()[:2]
        cell = boxhi[0] - boxlo[0]
        positions, forces, energy, process, temperature = [], [], [], [], []
        step = 0
        for stage in job.stages:
            lmp.command(f"fix md all nvt temp {stage.t_start} {stage.t_stop} {job.tdamp_fs / 1000.0!r}")
            start, stop = step, step + stage.steps
            ends = [start + stage.steps * (i + 1) // stage.frames for i in range(stage.frames)] or [stop]
            for end in ends:
                lmp.command(f"run {end - step} start {start} stop {stop}")
                step = end
                if stage.frames:
                    nlocal = lmp.extract_global("nlocal")  # arrays are sized nmax >= nlocal
                    order = np.argsort(lmp.numpy.extract_atom("id")[:nlocal])
                    positions.append(lmp.numpy.extract_atom("x")[:nlocal][order] - boxlo)
                    forces.append(lmp.numpy.extract_atom("f")[:nlocal][order])
                    energy.append(lmp.get_thermo("pe"))
                    process.append(stage.label)
                    temperature.append(stage.t_start + (stage.t_stop - stage.t_start) * (step - start) / stage.steps)
            lmp.command("unfix md")
        if lmp.get_natoms() != job.natoms or not np.all(np.isfinite(energy)):
            raise RuntimeError(f"MD of {job} lost atoms or gave non-finite energies")
        return _Frames(cell, np.stack(positions), np.stack(forces), np.array(energy), process, temperature)
    finally:
        lmp.close()


def _atoms(job: _Job, frames: _Frames) -> list[Atoms]:
    """ASE Atoms of one job's snapshots, wrapped into the cell, with energy and forces attached."""
    out = []
    for i in range(len(frames.energy)):
        atoms = Atoms(f"C{job.natoms}", positions=frames.positions[i], cell=[frames.cell] * 3, pbc=True)
        atoms.wrap()
        atoms.info.update(
            density=job.density,
            process=frames.process[i],
            temperature=frames.temperature[i],
            run=job.run,
            seed=job.seed,
        )
        atoms.calc = SinglePointCalculator(atoms, energy=float(frames.energy[i]), forces=frames.forces[i])
        out.append(atoms)
    return out


def _write(path: Path, frames: list[Atoms]) -> None:
    """Write ``frames`` to ``path`` as extended XYZ via ``path.tmp`` and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp, frames, format="extxyz")
    os.replace(tmp, path)


def output_files(config: GenerateConfig) -> list[str]:
    """The files (relative to the output directory) that ``config`` generates, in job order."""
    return list(dict.fromkeys(job.file for job in _jobs(config)))


def generate(out_dir: Path, config: GenerateConfig, workers: int | None = None, progress: bool = True) -> list[Path]:
    """Run every MD job of ``config`` in parallel (``workers`` spawned processes, default all CPUs)
    and write the extended-XYZ files under ``out_dir``; return their paths in job order.

    Each file is written as soon as all of its jobs are done, atomically (``*.tmp`` then rename),
    so files already there are complete and their jobs are skipped: an interrupted run resumes.
    """
    out_dir = Path(out_dir)
    files = output_files(config)
    jobs = [job for job in _jobs(config) if not (out_dir / job.file).is_file()]
    pending = {file: sum(job.file == file for job in jobs) for file in files}
    results: dict[str, dict[int, list[Atoms]]] = defaultdict(dict)
    if not jobs:
        return [out_dir / file for file in files]
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_run_job, job): (i, job) for i, job in enumerate(jobs)}
        for future in tqdm(as_completed(futures), total=len(jobs), desc="melt-quench MD", disable=not progress):
            i, job = futures[future]
            results[job.file][i] = _atoms(job, future.result())
            pending[job.file] -= 1
            if not pending[job.file]:
                _write(out_dir / job.file, [a for _, atoms in sorted(results.pop(job.file).items()) for a in atoms])
    return [out_dir / file for file in files]
