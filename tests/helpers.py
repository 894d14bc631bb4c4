"""Tiny generated frames and trajectories for the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from phstore.units import CARBON_MASS_U, density_gcc

ROOT = Path(__file__).resolve().parents[1]
REAL_CARBON = ROOT.parent / "shared" / "data" / "real-carbon"


def run(*args: str) -> str:
    """``phstore ARGS`` in a fresh interpreter from the repository root; its stdout (fails on a
    non-zero exit with the end of its output)."""
    out = subprocess.run(
        [sys.executable, "-m", "phstore", *args], capture_output=True, text=True, timeout=1500, cwd=ROOT
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def assert_float32_of(stored: np.ndarray, exact: np.ndarray) -> None:
    """``stored`` is float32 and equals the float64 ``exact`` within float32 rounding (half a
    float32 spacing, relative) plus 1e-10 absolute: dscribe's float64 output moves by ~1e-11
    with the number of BLAS threads (Dask workers run one, a test process several)."""
    assert stored.dtype == np.float32
    np.testing.assert_allclose(stored, exact, rtol=2.0**-24, atol=1e-10)


def carbon_frame(n_side: int = 4, density: float = 2.4, jitter: float = 0.35, seed: int = 0) -> Atoms:
    """A disordered periodic carbon cell: a simple-cubic lattice of n_side³ atoms, jittered (Å),
    with a made-up energy (eV) that depends on the structure."""
    rng = np.random.default_rng(seed)
    n = n_side**3
    side = (density_gcc(n * CARBON_MASS_U, 1.0) / density) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    # jitter capped at 0.6 Å per axis: lattice neighbours (≥ 1.79 Å apart up to 3.5 g/cm³) stay more
    # than ingest's 0.5 Å overlap threshold apart
    positions = (grid + 0.5) * side / n_side + np.clip(rng.normal(scale=jitter, size=(n, 3)), -0.6, 0.6)
    atoms = Atoms("C" * n, positions=positions, cell=[side] * 3, pbc=True)
    atoms.wrap()
    energy = -7.0 * n + float(np.sum(np.sin(positions)))
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((n, 3)))
    atoms.info.update(density=density, process="test")
    return atoms


def write_trajectory(path: Path, n_frames: int, density: float = 2.4, n_side: int = 4, seed: int = 0) -> Path:
    """An extended-XYZ file of ``n_frames`` distinct frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, [carbon_frame(n_side, density, seed=seed * 1000 + i) for i in range(n_frames)], format="extxyz")
    return path


def write_vasprun(path: Path, frames: list[Atoms]) -> Path:
    """A minimal vasprun.xml of an MD run (Γ point; one <calculation> per frame) with the
    elements ASE's reader needs: atominfo, initial structure, k-points, energies, forces."""

    def varray(name: str, rows: np.ndarray) -> str:
        body = "".join(f"<v>{' '.join(f'{x:.10f}' for x in row)}</v>" for row in rows)
        return f'<varray name="{name}">{body}</varray>'

    def structure(atoms: Atoms, name: str = "") -> str:
        attr = f' name="{name}"' if name else ""
        return (
            f"<structure{attr}><crystal>{varray('basis', atoms.cell.array)}</crystal>"
            f"{varray('positions', atoms.get_scaled_positions())}</structure>"
        )

    first = frames[0]
    atom_rows = "".join(f"<rc><c>{s}</c><c>1</c></rc>" for s in first.get_chemical_symbols())
    steps = []
    for atoms in frames:
        e = atoms.get_potential_energy()
        energy = f'<energy><i name="e_fr_energy">{e:.8f}</i><i name="e_0_energy">{e:.8f}</i></energy>'
        steps.append(
            f"<calculation><scstep>{energy}</scstep>{structure(atoms)}"
            f"{varray('forces', atoms.get_forces())}{energy}</calculation>"
        )
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1"?><modeling>'
        '<kpoints><varray name="kpointlist"><v>0 0 0</v></varray><varray name="weights"><v>1</v></varray></kpoints>'
        f'<parameters></parameters><atominfo><array name="atoms"><set>{atom_rows}</set></array></atominfo>'
        f"{structure(first, 'initialpos')}{''.join(steps)}</modeling>"
    )
    return path


def corrupt_inner_chunks(array: Path, chunks: list[int]) -> None:
    """Overwrite inner ``chunks`` (along the first dimension) of the first shard of the sharded
    Zarr array at ``array`` with garbage of the same length: the shard's index and its other
    chunks still read, those chunks no longer decode."""
    import zarr

    arr = zarr.open_array(str(array), mode="r")
    n_inner = arr.shards[0] // arr.chunks[0]
    shard = array / arr.metadata.encode_chunk_key((0,) * arr.ndim)
    data = bytearray(shard.read_bytes())
    index = np.frombuffer(bytes(data[-(16 * n_inner + 4) : -4]), "<u8").reshape(n_inner, 2)  # (offset, bytes); crc32c
    for offset, length in index[chunks]:
        data[offset : offset + length] = b"\xff" * int(length)
    shard.write_bytes(bytes(data))


def record_epochs(monkeypatch, module) -> list[int]:
    """The epochs ``module``'s training loop runs (its :func:`~phstore.training.checkpoint.epochs`),
    recorded as they start."""
    ran: list[int] = []
    original = module.epochs

    def recording(*args, **kwargs):
        for epoch in original(*args, **kwargs):
            ran.append(epoch)
            yield epoch

    monkeypatch.setattr(module, "epochs", recording)
    return ran


def interrupt_after_checkpoint(monkeypatch, epoch: int, within: bool = False) -> list[int]:
    """Checkpoint as often as the loop offers, and raise KeyboardInterrupt once the checkpoint
    after ``epoch`` finished epochs is written (``within``: the first one written in the middle
    of the next epoch); clear the returned list to stop interrupting."""
    from phstore.training import checkpoint

    save, die_after = checkpoint.Checkpoint.save, [epoch]

    def save_then_die(self, finished, *args, **kwargs):
        save(self, finished, *args, **kwargs)
        if finished in die_after and (kwargs.get("within") is not None) == within:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "EVERY_SECONDS", 0.0)
    monkeypatch.setattr(checkpoint.Checkpoint, "save", save_then_die)
    return die_after


def assert_same_training(a, b, rtol: float = 0.0) -> None:
    """Two model directories hold the same weights and learning curve (but its timings), to
    relative ``rtol`` (0: bit for bit)."""
    import pytest

    from phstore.modeldir import load_model_dir

    x, y = load_model_dir(a.path).state(), load_model_dir(b.path).state()
    assert x.keys() == y.keys()
    for name in x:
        np.testing.assert_allclose(x[name], y[name], rtol=rtol, atol=rtol / 100, err_msg=name)
    for p, q in zip(a.metrics["history"], b.metrics["history"], strict=True):
        assert p.keys() == q.keys()
        assert {k: v for k, v in p.items() if k != "seconds"} == pytest.approx(
            {k: v for k, v in q.items() if k != "seconds"}, rel=rtol, abs=0
        )
