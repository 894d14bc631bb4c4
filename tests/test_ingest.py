"""Ingest: keys, formats, bad input (reported and skipped), no duplicates on re-ingest."""

import io
import shutil
from pathlib import Path

import ase
import ase.db
import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from phstore import open_store
from phstore.commands import find
from phstore.ingest import SourceError, ingest
from phstore.pipeline import Stage, done
from phstore.units import density_gcc
from tests.helpers import carbon_frame, write_trajectory, write_vasprun


def test_zenodo_layout_keys(tiny_source, tmp_path):
    report = ingest(tmp_path / "s.zarr", [tiny_source], progress=False)
    assert report.added == {"C64": 11} and not report.rejected
    ds = open_store(tmp_path / "s.zarr").frames("C64").load()
    assert sorted(set(ds.trajectory.values.tolist())) == ["64atom_amorphous/run1", "64atom_amorphous/run2"]
    run2 = ds.where(ds.trajectory == "64atom_amorphous/run2", drop=True)
    np.testing.assert_array_equal(run2.frame.values, np.arange(5))
    np.testing.assert_allclose(run2.density.values, 3.0)
    src = ase.io.read(tiny_source / "64atom_amorphous" / "run2.xyz", 3)
    row = run2.isel(snapshot=3)
    np.testing.assert_array_equal(row.positions.values, src.positions)
    np.testing.assert_array_equal(row.cell.values, src.cell.array)
    assert row.energy.item() == src.get_potential_energy()
    assert row.energy_per_atom.item() == pytest.approx(src.get_potential_energy() / 64)
    assert row.process.item() == "test" and row.source_index.item() == 3


def test_reingest_adds_no_duplicates(tiny_source, tmp_path):
    """A source is known by its content: ingesting it again, or a copy of it elsewhere, reads
    nothing; a file that changed is read again and only its new frames are added."""
    store = tmp_path / "s.zarr"
    ingest(store, [tiny_source], progress=False)
    again = ingest(store, [tiny_source], progress=False)
    assert again.n_added == 0 and again.known == 2 and again.duplicates == 0
    copy = shutil.copytree(tiny_source, tmp_path / "copied")
    assert ingest(store, [copy], progress=False).known == 2
    grown = copy / "64atom_amorphous" / "run1.xyz"
    ase.io.write(grown, ase.io.read(grown, ":") + [carbon_frame(4, seed=77)], format="extxyz")
    third = ingest(store, [copy], progress=False)
    assert third.known == 1 and third.duplicates == 6 and third.added == {"C64": 1}
    assert open_store(store).n_snapshots("C64") == 12


def test_a_missing_source_is_not_ingested_until_it_appears(tiny_source, tmp_path):
    """A source ingest could not find counts as not ingested (it once counted as done, so a
    pipeline skipped the file forever once it appeared)."""
    store, late = tmp_path / "s.zarr", tmp_path / "late.xyz"
    report = ingest(store, [tiny_source, late], progress=False)
    assert report.missing == [str(late)] and not report.rejected and report.added == {"C64": 11}
    stage = Stage(find(["ingest"]), ("ingest", "--store", str(store), str(tiny_source), str(late)))
    assert not done(stage)
    write_trajectory(late, 2, seed=5)
    assert not done(stage)
    assert ingest(store, [tiny_source, late], progress=False).added == {"C64": 2}
    assert done(stage)
    with pytest.raises(SourceError, match="nothing to ingest"):
        ingest(tmp_path / "t.zarr", [tmp_path / "nope"], progress=False)
    assert not (tmp_path / "t.zarr").exists()


def test_density_from_cell_when_no_key(tmp_path):
    atoms = carbon_frame(4, density=2.2)
    del atoms.info["density"]
    ase.io.write(tmp_path / "f.xyz", atoms, format="extxyz")
    ingest(tmp_path / "s.zarr", [tmp_path / "f.xyz"], progress=False)
    stored = open_store(tmp_path / "s.zarr").frames("C64").density.values[0]
    assert stored == pytest.approx(density_gcc(64 * 12.011, atoms.get_volume()), rel=1e-12)
    assert stored == pytest.approx(2.2, rel=1e-9)


def test_collections_split_by_composition(tmp_path):
    write_trajectory(tmp_path / "a.xyz", 2, n_side=4)
    write_trajectory(tmp_path / "b.xyz", 2, n_side=3)
    report = ingest(tmp_path / "s.zarr", [tmp_path / "a.xyz", tmp_path / "b.xyz"], progress=False)
    assert report.added == {"C64": 2, "C27": 2}
    assert open_store(tmp_path / "s.zarr").collections == ["C27", "C64"]


def _lammps_dump(path: Path, frames: list[ase.Atoms], columns: str, row) -> Path:
    """A LAMMPS text dump of orthorhombic ``frames``; ``row(i, atoms)`` writes atom i's columns."""
    lines = []
    for step, a in enumerate(frames):
        lines += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", str(len(a)), "ITEM: BOX BOUNDS pp pp pp"]
        lines += [f"0 {a.cell[i, i]}" for i in range(3)] + [f"ITEM: ATOMS {columns}"]
        lines += [row(i, a) for i in range(len(a))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ase_db_and_lammps_dump_sources(tmp_path):
    frames = [carbon_frame(3, seed=i) for i in range(3)]
    with ase.db.connect(tmp_path / "frames.db") as db:
        for a in frames:
            db.write(a)
    # A dump of atom types only: its species must be named, and it carries no energy.
    dump = _lammps_dump(
        tmp_path / "traj.lammpstrj",
        frames[:2],
        "id type x y z",
        lambda i, a: f"{i + 1} 1 {' '.join(map(str, a[i].position))}",
    )
    report = ingest(tmp_path / "s.zarr", [tmp_path / "frames.db", dump], progress=False)
    assert report.added == {"C27": 3}
    stored = open_store(tmp_path / "s.zarr").frames("C27")
    np.testing.assert_allclose(stored.energy.values, [f.get_potential_energy() for f in frames])
    ((rejected),) = report.rejected
    assert rejected["source"].endswith("traj.lammpstrj") and "--species 1=C" in rejected["reason"]

    report = ingest(tmp_path / "s.zarr", [dump], progress=False, species={1: "C"})  # read again: it was refused
    assert report.added == {"C27": 2} and report.unlabelled == 2 and not report.rejected
    stored = open_store(tmp_path / "s.zarr").frames("C27")
    assert np.isnan(stored.energy.values[3:]).all() and np.isnan(stored.energy_per_atom.values[3:]).all()
    np.testing.assert_allclose(stored.positions.values[3], frames[0].positions, atol=1e-9)


def test_lammps_dump_elements_and_forces_without_a_placeholder_energy(tmp_path):
    """A dump's element column names the species, its fx fy fz are stored as forces, and ASE's
    placeholder energy of 0 eV is not taken for a label."""
    a = carbon_frame(3, seed=1)
    a.numbers[:2] = 1  # two H: atoms are stored sorted by atomic number, forces with them
    forces = np.arange(3 * len(a), dtype=float).reshape(-1, 3) / 10
    dump = _lammps_dump(
        tmp_path / "md.dump",
        [a],
        "id type element x y z fx fy fz",
        lambda i, b: (
            f"{i + 1} {b.numbers[i]} {b[i].symbol} {' '.join(map(str, b[i].position))} " + " ".join(map(str, forces[i]))
        ),
    )
    report = ingest(tmp_path / "s.zarr", [dump], progress=False)
    assert report.added == {"C25H2": 1} and report.unlabelled == 1
    f = open_store(tmp_path / "s.zarr").frames("C25H2")
    order = np.argsort(a.numbers, kind="stable")
    np.testing.assert_allclose(f.forces.values[0], forces[order])
    np.testing.assert_allclose(f.positions.values[0], a.positions[order], atol=1e-9)
    assert np.isnan(f.energy.values[0]) and np.isnan(f.stress.values[0]).all()


def test_species_of_atom_types_are_parsed_strictly():
    from phstore.ingest import parse_species

    assert parse_species("1=C, 2=H") == {1: "C", 2: "H"}
    for bad in ("1=Cx", "C=1", "1:C"):
        with pytest.raises(ValueError, match="1=C,2=H"):
            parse_species(bad)


def test_forces_stress_and_labels_are_stored(tmp_path):
    """Forces (permuted with the atoms), stress from a calculator or a virial label, config_type
    and the other info labels survive ingest; a frame without any has NaN and empty values."""
    a, b, c = (carbon_frame(3, seed=i) for i in range(3))
    a.numbers[0] = 14  # Si first: sorted to the end
    fa = np.random.default_rng(0).normal(size=(27, 3))
    stress = np.array([0.1, 0.2, 0.3, 0.01, 0.02, 0.03])
    a.calc = SinglePointCalculator(a, energy=-100.0, forces=fa, stress=stress)
    a.info.update(config_type="bulk_amo", xc_functional="LDA", sp3=0.25)
    virial = np.array([[1.0, 0.5, 0.4], [0.5, 2.0, 0.6], [0.4, 0.6, 3.0]])
    b.info["virial"] = virial
    c.calc = None
    ase.io.write(tmp_path / "f.xyz", [a, b, c], format="extxyz")
    report = ingest(tmp_path / "s.zarr", [tmp_path / "f.xyz"], progress=False)
    assert report.added == {"C27": 2, "C26Si": 1} and report.unlabelled == 1
    store = open_store(tmp_path / "s.zarr")
    si = store.frames("C26Si")
    np.testing.assert_allclose(si.forces.values[0], np.roll(fa, -1, axis=0), atol=1e-6)  # extxyz: 8 digits
    np.testing.assert_allclose(si.stress.values[0], stress, atol=1e-6)
    assert si.config_type.values[0] == "bulk_amo"
    import json

    assert json.loads(si.labels.values[0]) == {"xc_functional": "LDA", "sp3": 0.25}
    c27 = store.frames("C27")
    volume = abs(b.cell.volume)
    np.testing.assert_allclose(c27.stress.values[0], -np.array([1.0, 2.0, 3.0, 0.6, 0.4, 0.5]) / volume, rtol=1e-6)
    assert np.isnan(c27.energy.values[1]) and np.isnan(c27.forces.values[1]).all()
    assert c27.config_type.values.tolist() == ["", ""]


def test_a_store_made_before_the_forces_columns_takes_new_frames(tmp_path):
    """Columns added to the frames table later are NaN/empty for the rows of an older store,
    which still opens, reads and takes new frames."""
    import zarr

    write_trajectory(tmp_path / "a.xyz", 2, n_side=3)
    ingest(tmp_path / "s.zarr", [tmp_path / "a.xyz"], progress=False)
    group = zarr.open_group(str(tmp_path / "s.zarr" / "C27" / "frames"), mode="a")
    for name in ("forces", "stress", "config_type", "labels"):
        del group[name]
    store = open_store(tmp_path / "s.zarr")
    assert np.isnan(store.frames("C27").forces.values).all()
    assert store.read_rows("C27", "frames", slice(0, 2), ["config_type"])["config_type"].tolist() == ["", ""]
    write_trajectory(tmp_path / "b.xyz", 2, n_side=3, seed=5)
    assert ingest(tmp_path / "s.zarr", [tmp_path / "b.xyz"], progress=False).added == {"C27": 2}
    f = open_store(tmp_path / "s.zarr").frames("C27")
    assert np.isnan(f.forces.values[:2]).all() and (f.forces.values[2:] == 0).all()


def test_vasprun_xml_source(tmp_path):
    frames = [carbon_frame(3, seed=i) for i in range(4)]
    (tmp_path / "md").mkdir()
    path = write_vasprun(tmp_path / "md" / "vasprun.xml", frames)
    assert len(ase.io.read(path, ":")) == 4  # ASE reads it: the file is a valid vasprun.xml
    report = ingest(tmp_path / "s.zarr", [tmp_path], progress=False)
    assert report.added == {"C27": 4} and not report.rejected
    ds = open_store(tmp_path / "s.zarr").frames("C27")
    np.testing.assert_allclose(ds.energy.values, [f.get_potential_energy() for f in frames], atol=1e-7)
    np.testing.assert_allclose(ds.positions.values[2], frames[2].positions, atol=1e-8)
    assert ds.trajectory.values.tolist() == ["md/vasprun"] * 4
    assert ds.frame.values.tolist() == [0, 1, 2, 3]


def test_vasp_outcar_source(tmp_path):
    """The OUTCAR that ships with ASE's own test data (an 18-atom Ni cell), copied to an
    OUTCAR-named file as VASP writes it."""
    shipped = Path(ase.__file__).parent / "test" / "testdata" / "vasp" / "OUTCAR_example_1"
    if not shipped.exists():
        pytest.skip("this ASE installation ships no OUTCAR example")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "OUTCAR").write_bytes(shipped.read_bytes())
    report = ingest(tmp_path / "s.zarr", [tmp_path], progress=False)
    assert report.added == {"Ni18": 1} and not report.rejected
    direct = ase.io.read(tmp_path / "run" / "OUTCAR", 0)
    ds = open_store(tmp_path / "s.zarr").frames("Ni18")
    assert ds.energy.values[0] == direct.get_potential_energy()
    np.testing.assert_array_equal(ds.positions.values[0], direct.positions)
    assert ds.trajectory.values.tolist() == ["run/OUTCAR"]


def _bad_frames(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """A 9-frame extxyz where frames 1..7 are each broken in one way; 0 and 8 are good."""
    good = [carbon_frame(3, seed=i) for i in range(9)]
    texts = []
    for a in good:
        path = tmp_path / "one.xyz"
        ase.io.write(path, a, format="extxyz")
        texts.append(path.read_text())
    lines = texts[1].splitlines()
    texts[1] = "\n".join(lines[:2] + [lines[2].replace("C ", "C nonsense ", 1)] + lines[3:]) + "\n"  # unparseable
    nan = good[2].copy()
    nan.calc = good[2].calc
    nan.positions[0, 0] = np.nan
    nonper = good[3].copy()
    nonper.calc = good[3].calc
    nonper.pbc = [True, True, False]
    flat = good[4].copy()
    flat.calc = good[4].calc
    flat.cell[2] = [0, 0, 0]
    noen = good[5].copy()
    noen.calc = SinglePointCalculator(noen, energy=np.inf)  # (no energy at all is an unlabelled frame)
    unknown = good[6].copy()
    unknown.calc = good[6].calc
    for i, a in ((2, nan), (3, nonper), (4, flat), (5, noen)):
        ase.io.write(tmp_path / "one.xyz", a, format="extxyz")
        texts[i] = (tmp_path / "one.xyz").read_text()
    texts[6] = texts[6].replace("\nC ", "\nXx ", 1)  # unknown species
    texts[7] = "\n".join(texts[7].splitlines()[:10]) + "\n"  # truncated mid-frame
    path = tmp_path / "bad.xyz"
    path.write_text("".join(texts[:7] + texts[8:] + texts[7:8]))  # the truncated one last
    reasons = {
        1: "unparseable",
        2: "non-finite",
        3: "not periodic",
        4: "zero-volume",
        5: "infinite energy",
        6: "unknown species 'Xx'",
        8: "unparseable",
    }
    return path, reasons


def test_bad_frames_are_reported_and_skipped(tmp_path):
    path, reasons = _bad_frames(tmp_path)
    (tmp_path / "empty.xyz").write_text("")
    report = ingest(tmp_path / "s.zarr", [path, tmp_path / "empty.xyz", tmp_path / "missing.xyz"], progress=False)
    got = {r["index"]: r["reason"] for r in report.rejected if r["source"] == str(path)}
    assert set(got) == set(reasons)
    for i, word in reasons.items():
        assert word in got[i], (i, got[i])
    others = {r["source"]: r["reason"] for r in report.rejected if r["source"] != str(path)}
    assert others == {str(tmp_path / "empty.xyz"): "unparseable: ValueError: empty file"}
    assert report.missing == [str(tmp_path / "missing.xyz")]
    assert report.added == {"C27": 2}  # frames 0 and 7 of the file (written 0..6, 8, then 7 truncated)
    store = open_store(tmp_path / "s.zarr")
    assert store.frames("C27").source_index.values.tolist() == [0, 7]
    assert len(store.rejected) == len(report.rejected)
    path.write_text("\n" + path.read_text())  # another file to ingest: its frames are rejected again, recorded once
    assert ingest(tmp_path / "s.zarr", [path], progress=False).known == 0
    assert len(open_store(tmp_path / "s.zarr").rejected) == len(report.rejected)


def test_a_bad_label_rejects_its_frame_not_the_batch(tmp_path):
    """density=abc, temperature=hot, density=nan: those frames are rejected with file, index and the
    label; the others are stored. Reasons never echo non-printable bytes."""
    frames = [carbon_frame(3, seed=i) for i in range(5)]
    frames[1].info["density"] = "abc"
    frames[2].info["temperature"] = "hot"
    frames[3].info["density"] = float("nan")
    ase.io.write(tmp_path / "labels.xyz", frames, format="extxyz")
    (tmp_path / "junk.xyz").write_bytes(b"\x00\x01\x1b[31mred\xff\xfe binary junk")
    report = ingest(tmp_path / "s.zarr", [tmp_path / "labels.xyz", tmp_path / "junk.xyz"], progress=False)
    got = {(r["source"], r["index"]): r["reason"] for r in report.rejected}
    labels = str(tmp_path / "labels.xyz")
    assert got[labels, 1] == "bad label: density=abc is not a positive number"
    assert got[labels, 2] == "bad label: temperature=hot is not a number"
    assert got[labels, 3] == "bad label: density=nan is not a positive number"
    assert report.added == {"C27": 2}
    assert open_store(tmp_path / "s.zarr").frames("C27").source_index.values.tolist() == [0, 4]
    junk = got[str(tmp_path / "junk.xyz"), 0]
    assert junk.isprintable() and "\x1b" not in junk


def test_overlapping_atoms_are_rejected_with_the_pair(tmp_path):
    """Two atoms closer than 0.5 Å (also across the periodic boundary) reject the frame, naming the
    pair and distance; min_distance=0 keeps them."""
    frames = [carbon_frame(3, seed=i) for i in range(4)]
    same, near, wrapped = (frames[i].positions.copy() for i in (1, 2, 3))
    same[5] = same[4]
    near[5] = near[4] + [0.3, 0.0, 0.0]
    side = frames[3].cell[0, 0]
    wrapped[4], wrapped[5] = [0.1, 1.0, 1.0], [side - 0.1, 1.0, 1.0]  # 0.2 Å apart through the boundary
    for atoms, pos in zip(frames[1:], (same, near, wrapped)):
        energy = atoms.get_potential_energy()
        atoms.positions = pos
        atoms.calc = SinglePointCalculator(atoms, energy=energy)
    ase.io.write(tmp_path / "f.xyz", frames, format="extxyz")
    report = ingest(tmp_path / "s.zarr", [tmp_path / "f.xyz"], progress=False)
    got = {r["index"]: r["reason"] for r in report.rejected}
    assert set(got) == {1, 2, 3} and report.added == {"C27": 1}
    assert "overlapping atoms: 4 and 5 are 0.000 Å apart, closer than 0.5 Å" in got[1]
    assert "are 0.300 Å apart" in got[2] and "are 0.200 Å apart" in got[3]
    # a file with refused frames is read again: other settings may accept them
    kept = ingest(tmp_path / "s.zarr", [tmp_path / "f.xyz"], progress=False, min_distance=0)
    assert kept.known == 0 and kept.added == {"C27": 3} and kept.duplicates == 1 and not kept.rejected
    assert ingest(tmp_path / "s.zarr", [tmp_path / "f.xyz"], progress=False).known == 1  # now read to its end


def test_rejected_frames_live_in_arrays_and_info_summarises_them(tmp_path):
    """Not in the root attributes (read at every open); a list an older store kept there moves over."""
    import zarr

    path, reasons = _bad_frames(tmp_path)
    store = tmp_path / "s.zarr"
    ingest(store, [path], progress=False)
    root = zarr.open_group(str(store), mode="r+")
    assert "rejected" not in root.attrs and root["rejected_reason"].shape == (len(reasons),)
    older = {"source": "old.xyz", "index": 3, "reason": "unparseable: from an older phstore"}
    root.attrs["rejected"] = [older]  # as stores written before kept them
    assert open_store(store).rejected[0] == older and len(open_store(store).rejected) == len(reasons) + 1
    path.write_text("\n" + path.read_text())  # read again: its rejections are known, the old one moves over
    ingest(store, [path], progress=False)
    assert "rejected" not in zarr.open_group(str(store), mode="r").attrs
    rejected = open_store(store).rejected
    assert len(rejected) == len(reasons) + 1 and older in rejected
    info = open_store(store).info()
    assert info["rejected"] == len(reasons) + 1
    assert info["rejected_reasons"]["unparseable"] == sum(r["reason"].startswith("unparseable:") for r in rejected)
    assert sum(info["rejected_reasons"].values()) == info["rejected"]


def test_interrupted_append_is_invisible_and_overwritten(tiny_source, tmp_path):
    """Rows written past the commit marker (an append killed half-way) never show up."""
    store_path = tmp_path / "s.zarr"
    ingest(store_path, [tiny_source / "64atom_amorphous" / "run1.xyz"], progress=False)
    import zarr

    root = zarr.open_group(str(store_path), mode="a")
    pos = root["C64/frames/positions"]
    pos.resize((pos.shape[0] + 3, *pos.shape[1:]))  # a torn append: one array longer than the rest
    assert open_store(store_path).frames("C64").sizes["snapshot"] == 6
    ingest(store_path, [tiny_source / "64atom_amorphous" / "run2.xyz"], progress=False)
    ds = open_store(store_path).frames("C64").load()
    assert ds.sizes["snapshot"] == 11 and zarr.open_array(str(store_path / "C64/frames/positions")).shape[0] == 11
    np.testing.assert_array_equal(ds.frame.values, [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4])


def test_dataset_labels_name_the_origin_of_the_energies(tiny_source, tmp_path):
    extra = write_trajectory(tmp_path / "other.xyz", 2, seed=9)
    ingest(tmp_path / "s.zarr", [tiny_source, extra], progress=False)
    labels = open_store(tmp_path / "s.zarr").frames("C64")["dataset"].values.tolist()
    # one dataset per file: a directory's name and the file's path in it, a file's stem
    assert labels == ["data/64atom_amorphous/run1"] * 6 + ["data/64atom_amorphous/run2"] * 5 + ["other"] * 2
    ingest(tmp_path / "t.zarr", [tiny_source, extra], progress=False, dataset="tersoff")
    assert set(open_store(tmp_path / "t.zarr").frames("C64")["dataset"].values.tolist()) == {"tersoff"}


def test_an_xdatcar_in_a_directory_is_an_unlabelled_trajectory(tmp_path):
    """VASP's XDATCAR holds positions only: its frames are stored without energy, as their own dataset."""
    frames = [carbon_frame(3, seed=i) for i in range(3)]
    (tmp_path / "md").mkdir()
    ase.io.write(tmp_path / "md" / "XDATCAR", frames, format="vasp-xdatcar")
    report = ingest(tmp_path / "s.zarr", [tmp_path / "md"], progress=False)
    assert report.added == {"C27": 3} and report.unlabelled == 3 and not report.rejected
    f = open_store(tmp_path / "s.zarr").frames("C27")
    assert np.isnan(f.energy.values).all() and set(f.dataset.values.tolist()) == {"md/XDATCAR"}
    np.testing.assert_allclose(f.positions.values[2], frames[2].positions, atol=1e-6)


def _messy_xyz(path: Path) -> Path:
    """An extended XYZ file of 14 frames with what real files hold: blank lines between frames,
    a frame twice (2 and 9: in different blocks), a broken atom line (frame 5), a truncated
    last frame (13)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [carbon_frame(2, seed=100 + i) for i in range(12)]
    buf = []
    for i, atoms in enumerate([*frames[:9], frames[2], *frames[9:]]):
        out = io.StringIO()
        ase.io.write(out, atoms, format="extxyz")
        text = out.getvalue()
        if i == 5:
            lines = text.splitlines(keepends=True)
            lines[4] = "C 0.1 oops 0.3\n"
            text = "".join(lines)
        buf.append(text + ("\n" if i % 4 == 0 else ""))
    buf.append(buf[0].splitlines(keepends=True)[0] + buf[0].splitlines(keepends=True)[1] + "C 0 0\n")
    path.write_text("".join(buf))
    return path


def test_a_negative_atom_count_ends_the_file_as_one_bad_frame(tmp_path):
    from phstore.ingest import read_frames, xyz_blocks

    path = tmp_path / "neg.xyz"
    good = io.StringIO()
    ase.io.write(good, carbon_frame(2), format="extxyz")
    path.write_text(good.getvalue() + "-2\ncomment\nC 0 0 0\n" + good.getvalue())
    assert [(s, e) for s, e, _ in xyz_blocks(path, 1)] == [
        (0, len(good.getvalue())),
        (len(good.getvalue()), path.stat().st_size),
    ]
    frames = list(read_frames(path))
    assert [i for i, _ in frames] == [0, 1] and isinstance(frames[1][1], Exception)


def test_blocks_of_an_xyz_file_cover_every_frame_once(tmp_path):
    """Ranges of whole frames, in order, from the first byte to the last, whatever the buffer:
    their frames are the file's (counted by splitting the whole text)."""
    from phstore.ingest import _split_xyz, xyz_blocks

    path = _messy_xyz(tmp_path / "messy.xyz")
    text = path.read_bytes()
    whole = list(_split_xyz(text.decode()))
    for buffer in (61, 1000, 1 << 20):
        for frames in (1, 4, 100):
            ranges = list(xyz_blocks(path, frames, buffer))
            assert ranges[0][0] == 0 and ranges[-1][1] == len(text)
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            pieces = [list(_split_xyz(text[s:e].decode())) for s, e, _ in ranges]
            assert [f for _, _, f in ranges] == np.cumsum([0, *map(len, pieces)])[:-1].tolist()
            assert [p for piece in pieces for p in piece] == whole
            assert all(len(p) <= frames for p in pieces[:-1])


def test_hash_index_agrees_with_a_set():
    from phstore.ingest import HashIndex

    rng = np.random.default_rng(0)
    stored = rng.integers(-(2**63), 2**63 - 1, 5000, dtype=np.int64)
    index, seen = HashIndex(stored), set(stored.tolist())
    for _ in range(40):
        batch = np.concatenate([rng.choice(stored, 50), rng.integers(-(2**63), 2**63 - 1, 3000, dtype=np.int64)])
        batch = np.concatenate([batch, batch[:10]])  # repeated within the batch
        expected = []
        for h in batch.tolist():
            expected.append(h not in seen)
            seen.add(h)
        new = index.new(batch)
        np.testing.assert_array_equal(new, expected)
        index.add(batch[new])
    assert len(index.sorted) + len(index.recent) == len(seen)


def test_ingest_on_workers_equals_ingest_here(tmp_path, client):
    """Blocks of a large file parsed on the workers and appended in order give the same store
    as one process: rows, keys, rejected frames and duplicates, in the same order."""
    folder = tmp_path / "src"
    _messy_xyz(folder / "messy.xyz")
    write_trajectory(folder / "run1.xyz", 7, n_side=2, seed=4)
    write_vasprun(folder / "vasprun.xml", [carbon_frame(2, seed=70 + i) for i in range(3)])
    here = ingest(tmp_path / "here.zarr", [folder], progress=False)
    there = ingest(tmp_path / "there.zarr", [folder], progress=False, client=client, block_frames=3)
    assert here.added == there.added and here.added["C8"] == 7 + 3 + 11
    assert (here.duplicates, here.unlabelled) == (there.duplicates, there.unlabelled) == (1, 0)
    assert here.rejected == there.rejected and [r["index"] for r in here.rejected] == [5, 13]
    a, b = open_store(tmp_path / "here.zarr"), open_store(tmp_path / "there.zarr")
    assert a.rejected == b.rejected and a.sources.keys() == b.sources.keys()
    for name in a.frames("C8").data_vars:
        np.testing.assert_array_equal(a.frames("C8")[name].values, b.frames("C8")[name].values, err_msg=name)
