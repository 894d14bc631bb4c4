"""The command line on small data (the whole demo runs as `phstore run pipelines/quick.yaml` in test_pipeline)."""

import dataclasses
import json
import subprocess
import sys

import ase.io
import pytest

from phstore import __version__
from phstore.cli import main, parser
from phstore.commands import COMMANDS, featurize, models
from phstore.commands.options import params_from
from phstore.descriptors import PersistenceImageParams, PHParams, SOAPParams
from phstore.training.params import NeuralConfig, SchNetConfig
from tests.helpers import ROOT, carbon_frame, run


def test_help_lists_every_command_and_its_kinds():
    p = parser()
    text = p.format_help()
    for command in (
        "generate",
        "ingest",
        "featurize",
        "train",
        "predict",
        "compare",
        "analyze",
        "info",
        "query",
        "verify",
        "cluster",
        "run",
    ):
        assert f"\n    {command} " in text
    for words in (["featurize", "--help"], ["train", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "phstore", *words], capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0
    assert all(k in proc.stdout for k in ("ridge", "cnn", "soap-mlp", "ph-soap", "schnet"))


def test_building_the_parser_imports_no_heavy_library():
    """`phstore --help` builds every command's options; Dask, xarray, zarr, numba and torch are
    imported only when a command runs."""
    code = (
        "import sys; from phstore.cli import parser; parser().format_help(); "
        "print(sorted(m for m in ('dask', 'distributed', 'xarray', 'zarr', 'numba', 'torch', 'ase', 'sklearn') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name, cls", [("ph", PHParams), ("soap", SOAPParams), ("pimage", PersistenceImageParams)])
def test_every_descriptor_parameter_is_an_option(name, cls):
    """Each field of the parameter dataclass has an option with its default; values given on
    the command line reach the descriptor's parameters."""
    command = next(c for c in featurize.COMMANDS if c.words == ("featurize", name))
    names = {o.name for o in command.options()}
    for f in dataclasses.fields(cls):
        if f.name == "ph":  # the PH variant read: its fields are ph_* options
            assert {f"ph_{g.name}" for g in dataclasses.fields(PHParams)} <= names
        else:
            assert f.name in names
    args = parser().parse_args(["featurize", name, "--store", "s"])
    assert params_from(cls, args) == cls()  # defaults are the dataclass's


def test_command_line_values_reach_the_parameters():
    args = parser().parse_args(
        [
            "featurize",
            "ph",
            "--store",
            "s",
            "--bins",
            "64",
            "--range",
            "0",
            "4",
            "--no-truncate",
            "--degrees",
            "1",
            "2",
            "--engine",
            "homcloud",
            "--time-limit",
            "9",
        ]
    )
    ph = args.command.descriptor(args)
    assert ph.params == PHParams(engine="homcloud", degrees=(1, 2), bins=64, range=(0.0, 4.0), truncate=False)
    assert ph.time_limit == 9.0
    args = parser().parse_args(
        ["featurize", "pimage", "--store", "s", "--no-ph-truncate", "--sigma", "0.2", "--birth-range", "0", "9"]
    )
    assert args.command.descriptor(args).params == PersistenceImageParams(
        ph=PHParams(truncate=False), sigma=0.2, birth_range=(0.0, 9.0)
    )
    args = parser().parse_args(["train", "soap-mlp", "--store", "s", "--hidden", "8", "8", "8", "--lr", "0.01"])
    assert args.command.params(args) == NeuralConfig.soap_mlp(hidden=(8, 8, 8), lr=0.01)
    args = parser().parse_args(["train", "schnet", "--store", "s", "--n-interactions", "1", "--cutoff", "4"])
    assert args.command.params(args) == SchNetConfig(n_interactions=1, cutoff=4.0)
    args = parser().parse_args(["train", "ph-soap", "--store", "s", "--ph-features", "pimage", "--epochs", "3"])
    assert args.command.params(args) == NeuralConfig.ph_soap(features=(("pimage", "image"), ("soap", "mean")), epochs=3)
    with pytest.raises(SystemExit):  # an engine that does not exist is refused by the parser
        parser().parse_args(["featurize", "ph", "--store", "s", "--engine", "gudhi"])


def test_every_model_kind_is_a_train_command():
    from phstore.training.registry import MODELS

    assert (
        {c.kind.name for c in models.COMMANDS if isinstance(c, models.Train)}
        == set(MODELS)
        == {
            "ridge",
            "soap-ridge",
            "cnn",
            "soap-mlp",
            "ph-soap",
            "schnet",
        }
    )
    assert len({c.name for c in COMMANDS}) == len(COMMANDS)


def test_version_module_entry_and_verbose_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "phstore", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == f"phstore {__version__}"
    quiet = subprocess.run(
        [sys.executable, "-m", "phstore", "info", "--store", str(tmp_path / "none.zarr")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert quiet.returncode == 1 and quiet.stderr.count("\n") == 1 and "Traceback" not in quiet.stderr
    loud = subprocess.run(
        [sys.executable, "-m", "phstore", "-v", "info", "--store", str(tmp_path / "none.zarr")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert loud.returncode == 1 and "Traceback" in loud.stderr and loud.stderr.strip().endswith(quiet.stderr.strip())


def test_a_closed_output_pipe_ends_quietly(tiny_source, tmp_path):
    """`phstore info | head`: when the reader goes away, no traceback and no 'Exception ignored'."""
    from phstore.ingest import ingest

    ingest(tmp_path / "s.zarr", [tiny_source], progress=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "phstore", "info", "--store", str(tmp_path / "s.zarr")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    proc.stdout.close()  # before the child (which takes a good part of a second to start) writes
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == ""


def test_dask_logs_its_cluster_only_with_verbose(tiny_source, tmp_path):
    """A featurize run prints its report, not Dask's INFO lines about starting and closing workers."""
    from phstore.ingest import ingest

    store = str(tmp_path / "s.zarr")
    ingest(store, [tiny_source], progress=False)
    command = [sys.executable, "-m", "phstore", "featurize", "ph", "--store", store, "--workers", "1", "--quiet"]
    quiet = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert quiet.returncode == 0 and "computed 11 snapshots" in quiet.stdout
    assert "INFO" not in quiet.stderr, quiet.stderr
    loud = subprocess.run([*command[:3], "-v", *command[3:]], capture_output=True, text=True, cwd=ROOT)
    assert "INFO distributed.scheduler" in loud.stderr


def test_ctrl_c_is_one_line_and_says_it_resumes(monkeypatch, capsys):
    def interrupted(self, args):
        raise KeyboardInterrupt

    monkeypatch.setattr(models.Compare, "run", interrupted)
    assert main(["compare", "--store", "s.zarr"]) == 130
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "interrupted" in err and "`phstore compare ...` again to resume" in err


def test_schnet_featurize_needs_a_model(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["featurize", "schnet", "--store", str(tmp_path / "s.zarr")])
    assert "--model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["featurize", "nope", "--store", str(tmp_path / "s.zarr")])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_soap_and_schnet_from_the_command_line(tiny_source, tmp_path):
    """ingest → featurize soap → train schnet → featurize schnet → info and query list both."""
    store, model = str(tmp_path / "s.zarr"), str(tmp_path / "model")
    run("ingest", str(tiny_source), "--store", store, "--quiet", "--chunk-size", "4")
    assert "computed 11 snapshots" in run("featurize", "soap", "--store", store, "--quiet", "--workers", "1")
    mlp = run(
        "train",
        "soap-mlp",
        "--store",
        store,
        "--epochs",
        "20",
        "--out",
        str(tmp_path / "mlp"),
        "--quiet",
        "--dataset",
        "data/*",  # one file, one dataset: a pattern declares the runs of one code comparable
    )
    assert (
        "test  RMSE" in mlp
        and json.loads((tmp_path / "mlp" / "model.json").read_text())["config"]["params"]["epochs"] == 20
    )
    out = run(
        "train",
        "schnet",
        "--store",
        store,
        "--out",
        model,
        "--epochs",
        "2",
        "--n-interactions",
        "1",
        "--batch-size",
        "4",
        "--quiet",
        "--dataset",
        "data/64atom_amorphous/run?",
    )
    assert "test  RMSE" in out and "meV/atom" in out and f"written to {model}" in out
    assert json.loads((tmp_path / "model" / "model.json").read_text())["config"]["params"]["n_interactions"] == 1
    assert "computed 11 snapshots" in run(
        "featurize", "schnet", "--store", store, "--model", model, "--quiet", "--workers", "1"
    )
    info = run("info", "--store", store)
    assert '"r_cut": 4.1' in info and '"n_max": 8' in info and '"n_atom_basis": 100' in info
    assert info.count("done 11, failed 0, pending 0") == 2
    q = run("query", "--store", store, "--density", "3.0")
    assert "5 snapshots selected" in q
    for name in ("soap_mean", "soap_per_atom", "schnet_mean", "schnet_per_atom"):
        assert name in q


def test_query_by_density_range_and_first_n_and_an_empty_selection_says_why(tiny_source, tmp_path, capsys):
    """The tiny source: 6 snapshots at 2.0 g/cm³ and 5 at 3.0."""
    import numpy as np

    from phstore.ingest import ingest

    store = str(tmp_path / "s.zarr")
    ingest(store, [tiny_source], progress=False)

    def selected(*argv: str) -> int:
        assert main(["query", "--store", store, *argv]) == 0
        return int(capsys.readouterr().out.split(" snapshots selected")[0].split()[-1])

    assert selected("--density", "2.5:3.1") == 5 and selected("--density", ":2.5") == 6
    assert selected("--density", "2.0:") == 11 and selected("--density", "2.9", "--density-tol", "0.2") == 5
    assert selected("--density", "2.0", "--first", "4") == 4
    assert main(["query", "--store", store, "--density", "2.5"]) == 0
    out = capsys.readouterr()
    assert "0 snapshots selected" in out.out and "densities (g/cm³) [2.0, 3.0]" in out.err
    assert main(["query", "--store", store, "--density", "heavy"]) == 1
    assert "--density takes densities" in capsys.readouterr().err
    assert main(["query", "--store", store, "--density", "3.0", "--export", str(tmp_path / "q.npz")]) == 0
    with np.load(tmp_path / "q.npz", allow_pickle=False) as exported:  # strings as unicode, not pickled objects
        assert exported["trajectory"].tolist() == ["64atom_amorphous/run2"] * 5 and exported["density"].shape == (5,)


def test_a_mistyped_store_is_one_line_and_creates_nothing(tiny_source, tmp_path, capsys):
    """featurize, predict and analyze on a store that does not exist stop with one line (no
    cluster started, no empty store left behind); ingest's --chunk-size cannot change (0: test_params)."""
    missing = tmp_path / "typo.zarr"
    for argv in (
        ["featurize", "ph", "--store", str(missing)],
        ["analyze", "maps", "--store", str(missing), "--collection", "C64"],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no phstore store at" in err and "phstore ingest" in err
        assert not missing.exists()
    assert main(["ingest", str(tiny_source), "--store", str(tmp_path / "s.zarr"), "--chunk-size", "4", "--quiet"]) == 0
    assert main(["ingest", str(tiny_source), "--store", str(tmp_path / "s.zarr"), "--chunk-size", "8", "--quiet"]) == 1
    assert "chunks of 4 snapshots" in capsys.readouterr().err
    assert main(["query", "--store", str(tmp_path / "s.zarr"), "--collection", "C999"]) == 1
    assert "no collection 'C999'" in capsys.readouterr().err  # not KeyError's quoted repr


def test_ingest_exit_status_says_what_happened(tiny_source, tmp_path, capsys):
    """0 all stored; 3 a source missing or a frame rejected (the rest stored); 1 nothing to
    ingest at all, and then no store is created."""
    store = str(tmp_path / "s.zarr")
    assert main(["ingest", str(tmp_path / "nope.xyz"), "--store", store, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing to ingest" in err and "nope.xyz" in err
    assert not (tmp_path / "s.zarr").exists()
    assert main(["ingest", str(tiny_source), str(tmp_path / "nope.xyz"), "--store", store, "--quiet"]) == 3
    assert "no such file or directory" in capsys.readouterr().err
    bad = tmp_path / "bad.xyz"
    bad.write_text('2\nenergy=1.0 pbc="T T T" Lattice="5 0 0 0 5 0 0 0 5"\nC 0 0 0\n')  # truncated frame
    assert main(["ingest", str(bad), "--store", store, "--quiet"]) == 3
    assert "rejected" in capsys.readouterr().err
    assert main(["ingest", str(tiny_source), "--store", store, "--quiet"]) == 0


def test_featurize_exits_3_when_a_frame_fails_and_names_it(tmp_path, capsys):
    frames = [carbon_frame(3, seed=s) for s in range(3)]
    frames[1].positions[5] = frames[1].positions[4]  # a duplicated atom: PH fails this frame only
    ase.io.write(tmp_path / "f.xyz", frames, format="extxyz")
    store = str(tmp_path / "s.zarr")
    assert main(["ingest", str(tmp_path / "f.xyz"), "--store", store, "--quiet"]) == 3  # overlapping atoms
    assert "overlapping atoms: 4 and 5 are 0.000 Å apart" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "f.xyz"), "--store", store, "--quiet", "--min-distance", "0"]) == 0
    sic = carbon_frame(3, seed=7)
    sic.numbers[0] = 14
    ase.io.write(tmp_path / "sic.xyz", sic, format="extxyz")
    assert main(["ingest", str(tmp_path / "sic.xyz"), "--store", store, "--quiet"]) == 0
    assert main(["featurize", "ph", "--store", store, "--workers", "1", "--quiet"]) == 3
    captured = capsys.readouterr()
    # frames 0 and 2 came in first, frame 1 (row 2) when overlapping atoms were let in
    assert f"failed C27 snapshot 2 ({tmp_path / 'f.xyz'} frame 1): " in captured.err
    assert "computed 3 snapshots in 2 shards, 1 failed" in captured.out
    # PH sees points, not species: said once for the collection, not hidden
    assert "note: C26Si: ph does not tell species apart: its C/Si atoms are all treated alike" in captured.err
    assert main(["featurize", "ph", "--store", store, "--workers", "1", "--quiet"]) == 0  # nothing left to do


def test_a_selection_exports_to_extxyz_that_ingests_back_the_same(tiny_source, tmp_path, capsys):
    import ase.io
    import numpy as np

    from phstore import open_store
    from phstore.ingest import ingest

    store = str(tmp_path / "s.zarr")
    ingest(store, [tiny_source], progress=False)
    out = tmp_path / "dense.extxyz"
    assert main(["query", "--store", store, "--density", "3.0", "--export", str(out)]) == 0
    assert "exported 5 frames" in capsys.readouterr().out
    frames = ase.io.read(out, ":")
    original = open_store(store).sel("C64", density=3.0).load()
    np.testing.assert_array_equal(np.stack([a.positions for a in frames]), original.positions.values)
    assert [a.get_potential_energy() for a in frames] == original.energy.values.tolist()
    assert {a.info["trajectory"] for a in frames} == {"64atom_amorphous/run2"} and frames[0].info["density"] == 3.0
    report = ingest(tmp_path / "back.zarr", [out], progress=False)  # the same snapshots, by content
    assert not report.rejected and report.added == {"C64": 5}
    hashes = open_store(tmp_path / "back.zarr").frames("C64").content_hash.values
    np.testing.assert_array_equal(np.sort(hashes), np.sort(original.content_hash.values))


def test_query_by_a_string_label_the_sources_carried(tmp_path, capsys):
    """--where LABEL=NAME selects by any string column of the frames (here the melt-quench stage
    `process`), names or shell patterns, several names of one label meaning any of them."""
    import ase.io

    from phstore.ingest import ingest
    from tests.helpers import carbon_frame

    frames = [carbon_frame(3, seed=i) for i in range(7)]
    for i, atoms in enumerate(frames):
        atoms.info["process"] = ("hold_9000K", "cool_9000K_5000K", "hold_5000K")[i % 3]
    ase.io.write(tmp_path / "run.xyz", frames, format="extxyz")
    store = str(tmp_path / "s.zarr")
    ingest(store, [tmp_path / "run.xyz"], progress=False)

    def selected(*argv: str) -> int:
        assert main(["query", "--store", store, *argv]) == 0
        return int(capsys.readouterr().out.split(" snapshots selected")[0].split()[-1])

    assert selected("--where", "process=hold_5000K") == 2 and selected("--where", "process=hold_*") == 5
    assert selected("--where", "process=hold_5000K", "--where", "process=hold_9000K") == 5
    assert selected("--where", "process=hold_*", "--frames", "0:4") == 3
    assert main(["query", "--store", store, "--where", "stage=hold"]) == 1
    assert "no string label ['stage']; its labels are" in capsys.readouterr().err
    assert main(["query", "--store", store, "--where", "process"]) == 1
    assert "--where takes LABEL=NAME" in capsys.readouterr().err
