"""Lazy queries: selection by density, trajectory and frame; info; read-only safety."""

import numpy as np
import pytest

from phstore import open_store
from phstore.ingest import ingest
from phstore.store import FRAMES, TABLE_ROWS, FeatureStore, StoreError
from tests.helpers import corrupt_inner_chunks


@pytest.fixture
def store(tiny_source, tmp_path):
    ingest(tmp_path / "s.zarr", [tiny_source], chunk_size=4, progress=False)
    return open_store(tmp_path / "s.zarr")


def test_sel_by_density_trajectory_frames(store):
    ds = store.sel(density=3.0)
    assert ds.sizes["snapshot"] == 5 and set(ds.trajectory.values.tolist()) == {"64atom_amorphous/run2"}
    assert store.sel(density=3.0004).sizes["snapshot"] == 5  # within the default tolerance
    assert store.sel(density=[2.0, 3.0]).sizes["snapshot"] == 11
    assert store.sel(density=2.5).sizes["snapshot"] == 0
    assert store.sel(density=slice(2.5, 3.0)).sizes["snapshot"] == 5  # a range: both ends included
    assert store.sel(density=slice(None, 2.0)).sizes["snapshot"] == 6
    ds = store.sel(trajectory="64atom_amorphous/run1", frames=slice(2, 5))
    assert ds.frame.values.tolist() == [2, 3, 4]
    assert store.sel(frames=[0, 4]).sizes["snapshot"] == 4


def test_sel_is_lazy_and_reads_only_needed_chunks(store):
    ds = store.sel(density=3.0, frames=[4])  # the last snapshot: chunk 2 of 3
    pos = ds["positions"]
    assert pos.chunks is not None and pos.data.npartitions == 1  # dask-backed, a graph the selection's size
    np.testing.assert_array_equal(pos.shape, (1, 64, 3))
    last = store.frames("C64")["positions"].values[-1]
    # the chunks the selection does not need, inside the one shard file: unreadable from now on
    corrupt_inner_chunks(store.path / "C64" / FRAMES / "positions", [0, 1])
    np.testing.assert_array_equal(pos.values[0], last)
    with pytest.raises(Exception):
        store.sel(density=2.0, frames=[0])["positions"].values


def test_frames_table_chunking(store):
    """Per-atom and cell arrays are chunked like the descriptors, in shards of MAX_SHARD_CHUNKS
    chunks; the 1-D columns unsharded, numbers by NUMBER_ROWS, strings by TABLE_ROWS."""
    from phstore.store import MAX_SHARD_CHUNKS, NUMBER_ROWS

    (coll,) = store.collections
    arrays = dict(store.zarr_group(coll)[FRAMES].arrays())
    assert {"positions", "cell", "energy_per_atom", "density", "trajectory", "trajectory_code"} <= set(arrays)
    assert arrays["density"].chunks != arrays["trajectory"].chunks  # both kinds are there
    for name, arr in arrays.items():
        rows = NUMBER_ROWS if arr.dtype.kind in "biuf" else TABLE_ROWS
        expected = (rows, None) if arr.ndim == 1 else (4, 4 * MAX_SHARD_CHUNKS)
        assert (arr.chunks[0], arr.shards and arr.shards[0]) == expected, name
    assert sorted(p.name for p in (store.path / coll / FRAMES / "positions" / "c").iterdir()) == ["0"]  # one file


def test_shard_sizes_follow_the_rule():
    """A shard holds up to MAX_SHARD_CHUNKS chunks, SHARD_BYTES uncompressed, and a group has at
    least MIN_TASKS shards when it has the chunks; always a power of two of whole chunks."""
    from phstore.store import MAX_SHARD_CHUNKS, MIN_TASKS, SHARD_BYTES, shard_snapshots

    assert shard_snapshots(32, 64 * 3 * 8) == 32 * MAX_SHARD_CHUNKS  # positions of 64 atoms
    per_atom_soap = 512 * 360 * 4  # a 512-atom frame's per-atom SOAP: 2 chunks fit in SHARD_BYTES
    assert shard_snapshots(32, per_atom_soap) == 64 and 2 * 32 * per_atom_soap <= SHARD_BYTES < 4 * 32 * per_atom_soap
    assert shard_snapshots(32, 10**9) == 32  # never less than a chunk
    assert shard_snapshots(32, 1440, n_chunks=10) == 32  # 320 snapshots: a task per chunk
    assert shard_snapshots(32, 1440, n_chunks=5 * MIN_TASKS) == 4 * 32  # at least MIN_TASKS tasks
    assert shard_snapshots(32, 1440, n_chunks=10**6 // 32) == 32 * MAX_SHARD_CHUNKS


def test_several_collections_need_a_choice(store, tmp_path):
    from tests.helpers import write_trajectory

    ingest(store.path, [write_trajectory(tmp_path / "x" / "small.xyz", 2, n_side=3)], progress=False)
    with pytest.raises(ValueError, match="collection=..."):
        open_store(store.path).sel(density=2.4)
    assert open_store(store.path).sel("C27").sizes["snapshot"] == 2


def test_info_and_errors_say_what_to_do(store, tmp_path):
    info = store.info()
    assert info["collections"]["C64"]["n_snapshots"] == 11
    assert info["collections"]["C64"]["densities"] == [2.0, 3.0]
    with pytest.raises(StoreError, match="phstore ingest"):
        open_store(tmp_path / "nothing.zarr")
    with pytest.raises(KeyError, match="collections: \\['C64'\\]"):
        store.frames("C999")
    with pytest.raises(KeyError, match="no collection 'C64/frames'"):  # a group inside a collection is not one
        store.frames(f"C64/{FRAMES}")
    with pytest.raises(StoreError, match="read-only"):
        store.add_rejected([])
    assert FeatureStore(store.path, mode="a").chunk_size == 4


def test_open_modes_are_explicit_and_chunk_sizes_are_checked(store, tmp_path):
    """Writing needs an existing store ("r+"); only "a" (ingest) creates one; a chunk size is
    positive and cannot change once the store exists."""
    missing = tmp_path / "typo.zarr"
    with pytest.raises(StoreError, match="no phstore store .*`phstore ingest"):
        FeatureStore(missing, mode="r+")
    assert not missing.exists()  # a mistyped --store creates nothing
    with pytest.raises(ValueError, match="positive"):
        FeatureStore(tmp_path / "zero.zarr", mode="a", chunk_size=0)
    assert not (tmp_path / "zero.zarr").exists()
    with pytest.raises(StoreError, match="chunks of 4 snapshots"):
        FeatureStore(store.path, mode="r+", chunk_size=8)
    assert FeatureStore(store.path, mode="r+", chunk_size=4).chunk_size == 4
    with pytest.raises(ValueError, match="choose one of"):
        FeatureStore(store.path, mode="w")
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=3)
    with pytest.raises(StoreError, match="not a phstore-1 feature store"):
        FeatureStore(tmp_path / "other.zarr", mode="a")  # another Zarr store is not taken over


def test_chunk_arithmetic_and_frames_schema_live_in_the_store(store):
    """11 snapshots in chunks of 4: the store says which chunk a row is in."""
    from phstore.store import FRAME_COLUMNS, frames_table

    np.testing.assert_array_equal(store.chunk_of(np.arange(11)), np.arange(11) // 4)
    assert set(store.frames("C64").data_vars) == set(FRAME_COLUMNS)
    row = {name: store.frames("C64")[name].values[0] for name in FRAME_COLUMNS}
    with pytest.raises(ValueError, match="frames table has"):
        frames_table([{k: v for k, v in row.items() if k != "density"}])


def test_commit_rows_writes_status_last(store):
    """A write that fails before its end leaves the rows' old status: never done without values."""
    from phstore.store import DONE, PENDING, VariableSpec

    s = FeatureStore(store.path, mode="r+")
    prov = {"descriptor": "x", "params": {}, "versions": {}, "key": "k"}
    with s.writer("test"):
        s.ensure_descriptor("C64", "x-k", prov, {"v": VariableSpec((), (), "float64", np.nan)})
        with pytest.raises(ValueError, match="not written as values"):
            s.commit_rows("C64", "x-k", slice(0, 2), {"v": np.ones(2), "status": np.ones(2)}, [DONE, DONE])
        with pytest.raises(KeyError):  # the second value has no array: the write stops before the status
            s.commit_rows("C64", "x-k", slice(0, 2), {"v": np.ones(2), "missing": np.ones(2)}, [DONE, DONE])
        assert (s.status("C64", "x-k") == PENDING).all()
        with pytest.raises(ValueError, match="2 rows .* but 3 status values"):  # not numpy's IndexError
            s.commit_rows("C64", "x-k", slice(0, 2), {"v": np.ones(2)}, [DONE, DONE, DONE])
        s.commit_rows("C64", "x-k", slice(0, 2), {"v": np.array([1.0, 2.0])}, [DONE, DONE])
    assert s.status("C64", "x-k").tolist()[:3] == [DONE, DONE, PENDING]
    assert s.read_rows("C64", "x-k", slice(0, 2), ["v", "error"])["error"].tolist() == ["", ""]


def test_every_writing_call_needs_the_writer_lock(store):
    """Library calls write only under the lock, held here or given as the holder's token (a
    task on a worker); a token of a writer that has lost the lock is refused."""
    from phstore.store import DONE, StoreLocked, VariableSpec

    s = FeatureStore(store.path, mode="r+")
    prov = {"descriptor": "x", "params": {}, "versions": {}, "key": "k"}
    spec = {"v": VariableSpec((), (), "float64", np.nan)}
    row = {k: v.values[0] for k, v in store.frames("C64").isel(snapshot=[0]).data_vars.items()}
    for call in (
        lambda st: st.ensure_descriptor("C64", "x-k", prov, spec),
        lambda st: st.append_frames("C64", [row], {}),
        lambda st: st.add_rejected([{"source": "f", "index": 0, "reason": "r"}]),
        lambda st: st.add_sources({"d": "f"}),
    ):
        with pytest.raises(StoreError, match="writer lock: put the writing calls in `with store.writer"):
            call(s)
    assert store.n_snapshots("C64") == 11 and not store.rejected and not store.descriptor_groups("C64")
    with s.writer("test"):
        s.ensure_descriptor("C64", "x-k", prov, spec)
        task = FeatureStore(store.path, mode="r+", writer=s.writer_token)  # what a Dask task opens
        task.commit_rows("C64", "x-k", slice(0, 1), {"v": np.ones(1)}, [DONE])
        task.write_records("C64", "x-k", 0, np.zeros((1, 2)), {})
    with FeatureStore(store.path, mode="r+").writer("the next writer"):
        with pytest.raises(StoreLocked, match=r"no longer holds the lock \(now `the next writer`"):
            task.commit_rows("C64", "x-k", slice(1, 2), {"v": np.ones(1)}, [DONE])
        with pytest.raises(StoreLocked):
            task.annotate("C64", "x-k", {"a": 1})
    assert store.status("C64", "x-k").tolist()[:2] == [DONE, 0]


def test_readers_see_only_finished_rows_unless_they_ask(store):
    """Values a task wrote for rows that are not done (pending, failed) read as missing."""
    from phstore.store import DONE, FAILED, PENDING, VariableSpec

    s = FeatureStore(store.path, mode="r+")
    prov = {"descriptor": "x", "params": {}, "versions": {}, "key": "k"}
    spec = {"v": VariableSpec(("feature",), (2,), "float32", np.nan), "n": VariableSpec((), (), "int32", 0)}
    with s.writer("test"):
        s.ensure_descriptor("C64", "x-k", prov, spec)
        values = {"v": np.ones((4, 2), np.float32), "n": np.arange(5, 9, dtype=np.int32)}
        s.commit_rows("C64", "x-k", slice(0, 4), values, [DONE, PENDING, FAILED, DONE], ["", "", "bad", ""])
    ds = store.sel("C64", frames=slice(0, 5))
    assert ds["x_v"].dtype == np.float32 and ds["x_n"].dtype == np.int32
    rows = np.flatnonzero(store.select("C64", frames=slice(0, 5))[1] < 4)
    np.testing.assert_array_equal(ds["x_status"].values[rows], [DONE, PENDING, FAILED, DONE])
    np.testing.assert_array_equal(ds["x_v"].values[rows, 0], [1, np.nan, np.nan, 1])
    np.testing.assert_array_equal(ds["x_n"].values[rows], [5, 0, 0, 8])  # the fill value
    assert ds["x_v"].attrs["scaling"] == "zscore"
    shown = store.sel("C64", frames=slice(0, 5), unfinished=True)
    np.testing.assert_array_equal(shown["x_n"].values[rows], [5, 6, 7, 8])


def test_snapshot_keys_are_indexed_coordinates(store):
    """What store.sel returns is used the xarray way: sel by key, ranges, groupby, where(drop)."""
    ds = store.sel("C64")
    assert {"density", "trajectory", "frame", "dataset"} <= set(ds.coords) and "density" not in ds.data_vars
    assert ds.sel(density=slice(2.5, 3.1)).sizes["snapshot"] == 5  # the values are not sorted: no matter
    assert ds.sel(density=3.0004, tolerance=1e-3).sizes["snapshot"] == 5
    run1 = ds.sel(trajectory="64atom_amorphous/run1")
    assert run1.sizes["snapshot"] == 6 and set(run1.density.values.tolist()) == {2.0}
    assert ds.sel(frame=[0, 4]).sizes["snapshot"] == 4
    counts = ds["energy_per_atom"].groupby("trajectory").count()
    assert dict(zip(counts.trajectory.values.tolist(), counts.values.tolist())) == {
        "64atom_amorphous/run1": 6,
        "64atom_amorphous/run2": 5,
    }
    dense = ds.where(ds.density > 2.5, drop=True)
    assert dense.sizes["snapshot"] == 5 and (dense.density.values == 3.0).all()
    assert ds["positions"].chunks is not None  # still lazy


def test_repr_html_and_a_table_of_the_frames(store):
    assert repr(store) == f"<FeatureStore {str(store.path)!r} mode='r' chunk_size=4: C64: 11 snapshots>"
    html = store._repr_html_()
    assert "<table>" in html and "<td>C64</td><td>11</td><td>64</td>" in html
    table = store.table("C64")
    assert table.shape[0] == 11 and {"density", "trajectory", "energy_per_atom", "source"} <= set(table.columns)
    assert "positions" not in table.columns
    np.testing.assert_array_equal(table["density"].to_numpy(), store.frames("C64")["density"].values)


def test_plain_xarray_opens_the_whole_store_and_reads_its_units(tiny_source, tmp_path, client):
    """xr.open_datatree and xr.open_zarr(group=...) with no other argument, without a warning;
    histograms have their bin centres (Å²) as coordinates, per-atom SOAP shares the atom
    dimension of the positions, every variable says its units and parameters."""
    import json
    import warnings

    import xarray as xr

    from phstore.descriptors import PH, SOAP
    from phstore.descriptors.params import PHParams, SOAPParams
    from phstore.featurize import featurize

    path = tmp_path / "s.zarr"
    ingest(path, [tiny_source], chunk_size=4, progress=False)
    ph, soap = PH(PHParams(bins=16)), SOAP(SOAPParams(n_max=2, l_max=2))
    for descriptor in (ph, soap):
        assert featurize(path, descriptor, client, progress=False).computed == 11
    assert sorted(p.name for p in path.iterdir()) == ["C64", "zarr.json"]  # nothing foreign to Zarr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tree = xr.open_datatree(path, engine="zarr")
        frames = xr.open_zarr(path, group="C64/frames")
        hist = xr.open_zarr(path, group=f"C64/{ph.group}")
    assert tree["C64/frames"].sizes["snapshot"] == 11 and frames.sizes["snapshot"] == 11
    assert tree[f"C64/{ph.group}/records"].data_vars  # the ragged diagrams too
    edges = np.histogram_bin_edges([], bins=16, range=(0.0, 8.0))
    np.testing.assert_allclose(hist["birth"].values, (edges[:-1] + edges[1:]) / 2)
    assert hist["death"].attrs["units"] == "angstrom^2" and frames["forces"].attrs["units"] == "eV/angstrom"
    assert frames["energy_per_atom"].attrs == {"long_name": "potential energy per atom", "units": "eV"}

    ds = open_store(path).sel("C64")
    assert ds["ph_histogram"].dims == ("snapshot", "ph_birth", "ph_death")
    assert ds["ph_histogram"].sel(ph_birth=slice(0.0, 2.0)).shape == (11, 4, 16)
    assert json.loads(ds["ph_histogram"].attrs["parameters"])["bins"] == 16
    assert ds["ph_histogram"].attrs["units"] == "1" and "H1" in ds["ph_histogram"].attrs["long_name"]
    assert ds["soap_per_atom"].dims == ("snapshot", "atom", "soap_feature") and ds["positions"].dims[1] == "atom"
    assert {"config_type", "dataset"} <= set(ds.indexes)
    dense = ds.sel(density=slice(2.5, 3.1))
    means = dense["soap_mean"].groupby("trajectory").mean()
    np.testing.assert_allclose(means.values[0], dense["soap_mean"].values.mean(axis=0), rtol=1e-6)


def test_a_writer_upgrades_a_store_of_layout_1_for_plain_xarray(tiny_source, tmp_path, client):
    """Records arrays written before they had dimension names (layout 1) make xr.open_datatree
    fail; the next writer names them, keeping every diagram, and the old lock file goes; status
    and errors chunked by the snapshot chunk (layouts 1, 2) are chunked by TABLE_ROWS, kept."""
    import xarray as xr
    import zarr

    from phstore.descriptors import PH
    from phstore.descriptors.params import PHParams
    from phstore.featurize import featurize
    from phstore.store import LAYOUT, LOCK, RECORDS

    path = tmp_path / "s.zarr"
    ingest(path, [tiny_source], chunk_size=4, progress=False)
    ph = PH(PHParams(bins=16))
    featurize(path, ph, client, progress=False)
    before = [open_store(path).diagram("C64", i) for i in range(11)]
    root = zarr.open_group(str(path), mode="a", zarr_format=3, use_consolidated=False)
    for name, arr in list(root[f"C64/{ph.group}/{RECORDS}"].arrays()):  # as layout 1 wrote them
        data, attrs = arr[...], dict(arr.attrs)
        root[f"C64/{ph.group}/{RECORDS}"].create_array(
            name, shape=data.shape, dtype=data.dtype, attributes=attrs, overwrite=True
        )[...] = data
    group = root[f"C64/{ph.group}"]
    group["status"][3] = 2
    group["error"][3] = "failed before"
    status, errors = group["status"][...], group["error"][...]
    for name in ("status", "error"):  # as layouts 1 and 2 chunked them
        arr = group[name]
        data = arr[...]
        group.create_array(
            name, shape=arr.shape, dtype=arr.dtype, chunks=(4,), fill_value=arr.metadata.fill_value,
            dimension_names=arr.metadata.dimension_names, attributes=dict(arr.attrs), overwrite=True,
        )[...] = data  # fmt: skip
    del root.attrs["layout"]
    zarr.consolidate_metadata(str(path), zarr_format=3)
    (path / LOCK).touch()
    with pytest.raises(KeyError, match="dimension_names"):
        xr.open_datatree(path, engine="zarr")

    with FeatureStore(path, mode="r+").writer("test"):
        pass
    assert open_store(path)._root.attrs["layout"] == LAYOUT and not (path / LOCK).exists()
    upgraded = zarr.open_group(str(path / "C64" / ph.group), mode="r")
    assert upgraded["status"].chunks == upgraded["error"].chunks == (TABLE_ROWS,)
    np.testing.assert_array_equal(upgraded["status"][...], status)
    assert upgraded["error"][...].tolist() == errors.tolist()
    tree = xr.open_datatree(path, engine="zarr")
    assert tree[f"C64/{ph.group}/records"].data_vars
    for i, diagram in enumerate(before):
        if i != 3:  # marked failed above
            np.testing.assert_array_equal(open_store(path).diagram("C64", i), diagram)


def test_a_store_of_layout_3_reads_and_grows_unsharded(tiny_source, tmp_path, client, monkeypatch):
    """Stores written before layout 4 hold no shards (each chunk a file of its own) and groups
    without a ``shard_size``: they read, take new frames and resume featurize as they are, one
    task per chunk."""
    import ase.io
    import zarr

    import phstore.store as store_module
    from phstore.descriptors import PH
    from phstore.descriptors.params import PHParams
    from phstore.featurize import featurize
    from phstore.store import CODED, LAYOUT, code_name
    from tests.helpers import write_trajectory

    path = tmp_path / "s.zarr"
    ph = PH(PHParams(bins=16))
    with monkeypatch.context() as m:  # what layouts 1-3 wrote: one chunk a file
        m.setattr(store_module, "MAX_SHARD_CHUNKS", 1)
        m.setattr(store_module, "TABLE_ENCODING", {"chunks": (4096,)})
        ingest(path, [tiny_source], chunk_size=4, progress=False)
        featurize(path, ph, client, progress=False)
    root = zarr.open_group(str(path), mode="a", zarr_format=3, use_consolidated=False)
    del root[f"C64/{ph.group}"].attrs["shard_size"]
    for key in CODED:  # nor codes of the string keys
        del root[f"C64/{FRAMES}/{code_name(key)}"]
    root.attrs["layout"] = 3
    before = [open_store(path).diagram("C64", i) for i in range(11)]
    trajectories = open_store(path).column("C64", "trajectory")  # read from the strings

    more = write_trajectory(tmp_path / "more" / "run2.xyz", 5, n_side=4, seed=9)
    ingest(path, [more], progress=False)
    report = featurize(path, ph, client, progress=False)
    assert report.computed == 5 and sorted(s.shard for s in report.shards) == [2, 3]  # rows 11 | 12-15
    store = open_store(path)
    assert store._root.attrs["layout"] == LAYOUT and store.shard_size("C64", ph.group) == 4
    for name in ("frames/positions", "frames/density", f"{ph.group}/histogram", f"{ph.group}/status"):
        assert store.zarr_group("C64")[name].shards is None, name  # still one chunk a file
    for i, diagram in enumerate(before):
        np.testing.assert_array_equal(store.diagram("C64", i), diagram)
    direct = ph.compute(ase.io.read(more, 2)).records
    np.testing.assert_array_equal(store.diagram("C64", 13), direct[direct[:, 0] == 1][:, 1:])
    frames = store.zarr_group("C64")[FRAMES]
    for key in CODED:  # the next ingest made the codes, of the old rows too
        names = np.array(["", *frames[code_name(key)].attrs["names"]], dtype=object)
        assert names[frames[code_name(key)][...]].tolist() == frames[key][...].astype(object).tolist()
    assert store.column("C64", "trajectory")[:11].tolist() == trajectories.tolist()
    ds = store.sel("C64")
    assert ds.sizes["snapshot"] == 16 and (ds["ph_status"].values == 1).all() and np.isfinite(ds["ph_histogram"]).all()
