"""The command line on small data (the whole demo runs as `phstore run pipelines/quick.yaml` in test_pipeline)."""

import json

import pytest

from phstore.cli import build_parser, main
from tests.helpers import run


def test_help_lists_every_command():
    text = build_parser().format_help()
    for command in ("generate", "ingest", "featurize", "train", "compare", "info", "query"):
        assert command in text


def test_unknown_descriptor_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["featurize", "--store", str(tmp_path / "s.zarr"), "--descriptor", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="needs --model DIR"):
        main(["featurize", "--store", str(tmp_path / "s.zarr"), "--descriptor", "schnet"])


def test_soap_and_schnet_from_the_command_line(tiny_source, tmp_path):
    """ingest → featurize soap → train schnet → featurize schnet → info and query list both."""
    store, model = str(tmp_path / "s.zarr"), str(tmp_path / "model")
    run("ingest", str(tiny_source), "--store", store, "--quiet", "--chunk-size", "4")
    assert "computed 11 snapshots" in run("featurize", "--store", store, "--descriptor", "soap", "--quiet", "--workers", "1")
    mlp = run("train", "--store", store, "--model", "soap-mlp", "--epochs", "20", "--out", str(tmp_path / "mlp"), "--quiet")
    assert "test  RMSE" in mlp and json.loads((tmp_path / "mlp" / "model.json").read_text())["config"]["network"]["epochs"] == 20
    out = run("train", "--store", store, "--model", "schnet", "--out", model, "--epochs", "2", "--interactions", "1",
              "--batch-size", "4", "--quiet")
    assert "test  RMSE" in out and "meV/atom" in out and f"written to {model}" in out
    assert "computed 11 snapshots" in run("featurize", "--store", store, "--descriptor", "schnet", "--model", model,
                                          "--quiet", "--workers", "1")
    info = run("info", "--store", store)
    assert '"r_cut": 4.1' in info and '"n_max": 8' in info and '"n_atom_basis": 100' in info
    assert info.count("done 11, failed 0, pending 0") == 2
    q = run("query", "--store", store, "--density", "3.0")
    assert "5 snapshots selected" in q
    for name in ("soap_mean", "soap_per_atom", "schnet_mean", "schnet_per_atom"):
        assert name in q


def test_a_mistyped_store_is_one_line_and_creates_nothing(tiny_source, tmp_path, capsys):
    """featurize, predict and analyze on a store that does not exist stop with one line (no
    cluster started, no empty store left behind); ingest's --chunk-size cannot be 0 or change."""
    missing = tmp_path / "typo.zarr"
    for argv in (["featurize", "--store", str(missing)], ["analyze", "maps", "--store", str(missing), "--collection", "C64"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no phstore store at" in err and "phstore ingest" in err
        assert not missing.exists()
    assert main(["ingest", str(tiny_source), "--store", str(tmp_path / "s.zarr"), "--chunk-size", "0", "--quiet"]) == 1
    assert "positive" in capsys.readouterr().err and not (tmp_path / "s.zarr").exists()
    assert main(["ingest", str(tiny_source), "--store", str(tmp_path / "s.zarr"), "--chunk-size", "4", "--quiet"]) == 0
    assert main(["ingest", str(tiny_source), "--store", str(tmp_path / "s.zarr"), "--chunk-size", "8", "--quiet"]) == 1
    assert "chunks of 4 snapshots" in capsys.readouterr().err
