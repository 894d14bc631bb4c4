"""SOAP in the store against dscribe called directly; parameters and provenance; lazy queries."""

import numpy as np
import pytest
from dscribe.descriptors import SOAP as DScribeSOAP

from phstore import open_store
from phstore.descriptors import PH, SOAP, SOAPParams
from phstore.featurize import featurize
from phstore.ingest import ingest
from tests.helpers import assert_float32_of, write_trajectory


def direct(atoms, **kw):
    """dscribe on its own, with the seed paper's parameters unless overridden."""
    params = dict(species=["C"], r_cut=4.1, n_max=8, l_max=9, sigma=0.16, periodic=True) | kw
    return DScribeSOAP(**params).create(atoms)


@pytest.fixture(scope="module")
def store(tmp_path_factory, client):
    tmp = tmp_path_factory.mktemp("soap")
    write_trajectory(tmp / "data" / "a.xyz", 5, density=2.0, seed=1)
    write_trajectory(tmp / "data" / "b.xyz", 4, density=3.0, seed=2)
    ingest(tmp / "s.zarr", [tmp / "data"], chunk_size=4, progress=False, dataset="data")
    for descriptor in (SOAP(), SOAP(SOAPParams(n_max=4, l_max=4)), PH()):
        report = featurize(tmp / "s.zarr", descriptor, client, progress=False)
        assert report.computed == 9 and not report.failures and not report.errors
    return open_store(tmp / "s.zarr")


def test_paper_defaults_give_360_features():
    assert SOAP().n_features == 360
    assert SOAP().variables(216)["per_atom"].shape == (216, 360)


def test_stored_soap_equals_dscribe(store):
    group = SOAP().group
    ds = store.descriptor("C64", group).load()
    atoms = store.atoms("C64", slice(0, 9))
    for i, a in enumerate(atoms):
        expected = direct(a)
        assert_float32_of(ds["per_atom"].values[i], expected)
        np.testing.assert_allclose(ds["mean"].values[i], expected.mean(axis=0), rtol=1e-6, atol=1e-7)
    small = store.descriptor("C64", SOAP(SOAPParams(n_max=4, l_max=4)).group).load()
    assert_float32_of(small["per_atom"].values[3], direct(atoms[3], n_max=4, l_max=4))


def test_values_are_the_same_bits_in_this_process_as_in_the_workers(store):
    """The workers run one BLAS thread, this process as many as there are cores; dscribe's
    radial basis is built with one thread in both, so serial values equal the stored ones."""
    ds = store.descriptor("C64", SOAP().group).load()
    for i, atoms in enumerate(store.atoms("C64", slice(0, 3))):
        np.testing.assert_array_equal(SOAP().compute(atoms).values["per_atom"], ds["per_atom"].values[i])


def test_per_atom_array_is_chunked_by_snapshots_and_compressed_for_dense_floats(store):
    import zarr

    group = store.path / "C64" / SOAP().group
    arr = zarr.open_array(str(group / "per_atom"), mode="r")
    assert arr.chunks == (store.chunk_size, 64, 360)
    assert arr.dtype == np.float32
    (codec,) = arr.compressors
    assert (codec.cname.value, codec.shuffle.value, codec.typesize) == ("lz4", "bitshuffle", 4)
    chunks = list((group / "per_atom").rglob("c/*/*/*"))
    assert len(chunks) == -(-arr.shape[0] // store.chunk_size)  # written chunk by chunk
    raw_bytes = len(chunks) * store.chunk_size * 64 * 360 * 4
    assert sum(f.stat().st_size for f in chunks) < raw_bytes / 1.05
    assert zarr.open_array(str(group / "mean"), mode="r").compressors[0].to_dict()["name"] == "zstd"


def test_other_parameters_get_their_own_variables(store):
    ds = store.sel("C64", density=2.0)
    keys = {SOAP().provenance()["key"], SOAP(SOAPParams(n_max=4, l_max=4)).provenance()["key"]}
    for key in keys:
        assert f"soap_{key}_mean" in ds and f"soap_{key}_per_atom" in ds
    assert "ph_histogram" in ds  # PH stays unprefixed: one variant
    assert ds.sizes["snapshot"] == 5
    assert ds[f"soap_{SOAP().provenance()['key']}_per_atom"].chunks is not None  # lazy
    assert len(keys) == 2 and SOAP(SOAPParams(n_max=4, l_max=4)).n_features == 10 * 5
    info = store.info()["collections"]["C64"]["descriptors"]
    params = [d["params"] for d in info.values() if d["descriptor"] == "soap"]
    assert {p["n_max"] for p in params} == {4, 8} and all(p["r_cut"] == 4.1 for p in params)


def test_descriptors_export_to_extxyz_with_their_frames(store, tmp_path):
    """Chosen variables ride along in an extxyz export: per-atom ones as atom arrays (in the
    stored atom order), the others in the comment line, flattened; ASE reads back the stored values."""
    import ase.io

    from phstore.export import write_extxyz

    ds = store.dataset("C64")
    per_atom = next(v for v in ds.data_vars if v.startswith("soap_") and v.endswith("_per_atom"))
    rows = np.array([1, 7])
    path = tmp_path / "x.extxyz"
    assert write_extxyz(store, "C64", rows, path, [per_atom, "ph_histogram", "ph_jittered"]) == 2
    back = ase.io.read(path, ":")
    for a, row in zip(back, rows):
        np.testing.assert_allclose(a.positions, ds["positions"].values[row], atol=1e-7)
        np.testing.assert_allclose(a.arrays[per_atom], ds[per_atom].values[row], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(a.info["ph_histogram"], ds["ph_histogram"].values[row].ravel(), atol=1e-7)
        assert a.info["ph_jittered"] == ds["ph_jittered"].values[row]
    with pytest.raises(ValueError, match="no variable 'soap_nope'.*ph_histogram"):
        write_extxyz(store, "C64", rows, path, ["soap_nope"])
