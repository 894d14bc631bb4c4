"""The contract every descriptor keeps (entries in ``tests/conftest.py::DESCRIPTOR_CASES``).

Invariance under translation, permutation and a cubic-symmetry rotation; periodic-image
consistency (a 2×2×2 supercell gives the same snapshot-level values and tiled per-atom ones);
inputs not mutated; the Dask result equals the serial one; a bad frame is a recorded failure.
"""

from __future__ import annotations

import ase.io
import numpy as np

from phstore.descriptors import Descriptor, FrameResult
from phstore.featurize import featurize
from phstore.ingest import ingest
from phstore.store import DONE, FAILED, FeatureStore
from tests.helpers import carbon_frame


def frame():
    return carbon_frame(5, density=2.4, seed=7)  # 125 atoms in a 10.1 Å cube


def rel_l1(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).sum() / max(np.abs(b).sum(), 1e-300))


def assert_agree(
    descriptor: Descriptor,
    ref: FrameResult,
    out: FrameResult,
    tol: float,
    perm: np.ndarray | None = None,
    tile: int = 1,
) -> None:
    """``out`` holds ``ref``'s values, with per-atom rows permuted by ``perm`` or tiled ``tile`` times."""
    assert ref.error is None and out.error is None, (ref.error, out.error)
    specs = descriptor.variables(len(perm) if perm is not None else 1)
    assert set(out.values) == set(ref.values) == set(specs)
    for name, expected in ref.values.items():
        if specs[name].dims[:1] == ("atom",):
            expected = expected[perm] if perm is not None else np.tile(expected, (tile, *[1] * (expected.ndim - 1)))
        assert out.values[name].shape == expected.shape, name
        assert rel_l1(out.values[name], expected) <= tol, (name, rel_l1(out.values[name], expected))
    if ref.records is not None and out.records is not None and tile == 1:
        a, b = (r.records[np.lexsort(np.round(r.records, 9).T[::-1])] for r in (ref, out))
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-9)


def rotate_cubic(atoms):
    """90° rotation about z of a cubic cell: (x, y, z) → (L - y, x, z)."""
    out = atoms.copy()
    L = out.cell[0, 0]
    p = atoms.positions
    out.positions = np.column_stack([L - p[:, 1], p[:, 0], p[:, 2]])
    out.wrap()
    return out


def test_translation(case):
    descriptor, entry = case
    atoms = frame()
    moved = atoms.copy()
    moved.translate([1.3, -2.1, 0.7])
    assert_agree(
        descriptor, descriptor.compute(atoms), descriptor.compute(moved), entry.tol, perm=np.arange(len(atoms))
    )


def test_permutation(case):
    descriptor, entry = case
    atoms = frame()
    perm = np.random.default_rng(3).permutation(len(atoms))
    assert_agree(descriptor, descriptor.compute(atoms), descriptor.compute(atoms[perm]), entry.tol, perm=perm)


def test_cubic_rotation(case):
    descriptor, entry = case
    atoms = frame()
    assert_agree(
        descriptor,
        descriptor.compute(atoms),
        descriptor.compute(rotate_cubic(atoms)),
        entry.tol,
        perm=np.arange(len(atoms)),
    )


def test_periodic_images(case):
    descriptor, entry = case
    atoms = frame()
    assert_agree(
        descriptor, descriptor.compute(atoms), descriptor.compute(atoms.repeat((2, 2, 2))), entry.periodic_tol, tile=8
    )


def test_every_registered_descriptor_is_in_the_contract_suite():
    from phstore.descriptors import REGISTRY
    from tests.conftest import DESCRIPTOR_CASES

    assert set(REGISTRY) == set(DESCRIPTOR_CASES)


def test_output_matches_its_variables(case):
    """Every value a descriptor returns is one of its declared variables, of that shape and kind;
    its records have its record columns."""
    descriptor, _ = case
    atoms = frame()
    res = descriptor.compute(atoms)
    specs = descriptor.variables(len(atoms))
    assert res.error is None and set(res.values) == set(specs)
    for name, value in res.values.items():
        assert value.shape == specs[name].shape, name
        assert np.can_cast(value.dtype, specs[name].dtype, "same_kind"), (name, value.dtype)
    if descriptor.record_columns:
        assert descriptor.record_columns[0] == "row"  # the column the store adds: the row in its chunk
        assert res.records.ndim == 2 and res.records.shape[1] == len(descriptor.record_columns) - 1
    else:
        assert res.records is None


def test_inputs_not_mutated(case):
    descriptor, _ = case
    atoms = frame()
    before = atoms.copy()
    descriptor.compute_batch([atoms, atoms])
    np.testing.assert_array_equal(atoms.positions, before.positions)
    np.testing.assert_array_equal(atoms.cell.array, before.cell.array)
    np.testing.assert_array_equal(atoms.numbers, before.numbers)


def test_bad_frame_is_a_failure_not_a_crash(case):
    descriptor, entry = case
    res = descriptor.compute(entry.bad_frame(frame()))
    assert res.values is None and entry.bad_reason in res.error


def test_dask_result_equals_serial_and_bad_frame_is_recorded(case, client, tmp_path):
    descriptor, entry = case
    good = [carbon_frame(5, density=2.4, seed=20 + i) for i in range(6)]
    bad = entry.bad_frame(carbon_frame(5, density=2.4, seed=99))
    ase.io.write(tmp_path / "run.xyz", [*good[:3], bad, *good[3:]], format="extxyz")
    ingest(tmp_path / "s.zarr", [tmp_path / "run.xyz"], chunk_size=4, progress=False, min_distance=0)
    for needed in entry.inputs(descriptor):
        featurize(tmp_path / "s.zarr", needed, client, progress=False)
    report = featurize(tmp_path / "s.zarr", descriptor, client, progress=False)
    assert not report.errors and report.computed == len(good)
    store = FeatureStore(tmp_path / "s.zarr")
    failed = []
    for coll in store.collections:
        ds = store.descriptor(coll, descriptor.group).load()
        frames = store.atoms(coll, slice(0, store.n_snapshots(coll)))
        for i, atoms in enumerate(frames):
            if ds["status"].values[i] == FAILED:
                failed.append(ds["error"].values[i])
                continue
            assert ds["status"].values[i] == DONE
            stored = FrameResult(values={v: ds[v].values[i] for v in descriptor.variables(len(atoms))}, records=None)
            serial = descriptor.compute(atoms)
            assert_agree(descriptor, FrameResult(serial.values), stored, entry.tol, perm=np.arange(len(atoms)))
    assert len(failed) == 1 and entry.bad_reason in failed[0]
