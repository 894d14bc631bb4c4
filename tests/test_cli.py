"""The command line end to end on small data: generate → ingest → featurize (LocalCluster) → query."""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from phstore import open_store
from phstore.cli import build_parser, main


def run(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "phstore.cli", *args], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_help_lists_every_command():
    text = build_parser().format_help()
    for command in ("generate", "ingest", "featurize", "train", "compare", "info", "query"):
        assert command in text


def test_end_to_end(tmp_path):
    data, store = tmp_path / "data", tmp_path / "s.zarr"
    run("generate", "--out", str(data), "--densities", "2.4", "--runs", "1", "--quiet")
    assert (data / "216atom_amorphous" / "run1.xyz").exists()
    assert "added C216: 59" in run("ingest", str(data), "--store", str(store), "--quiet")
    out = run("featurize", "--store", str(store), "--quiet", "--workers", "2")
    assert "computed 59 snapshots" in out and "0 failed" in out and "Dask dashboard: http://127.0.0.1:" in out
    again = run("featurize", "--store", str(store), "--quiet", "--workers", "1")
    assert "computed 0 snapshots" in again
    ridge = run("train", "--store", str(store), "--model", "ridge", "--out", str(tmp_path / "ridge"), "--quiet")
    assert "train RMSE" in ridge and "test  RMSE" in ridge and (tmp_path / "ridge" / "parity.png").exists()
    predicted = run("predict", "--model", str(tmp_path / "ridge"), "--store", str(store), "--collection", "C216")
    assert "predicted 59 snapshots of C216, 0 without features" in predicted and "RMSE" in predicted
    cnn = run("train", "--store", str(store), "--model", "cnn", "--epochs", "2", "--out", str(tmp_path / "cnn"), "--quiet")
    assert "test  RMSE" in cnn and (tmp_path / "cnn" / "learning-curve.png").exists()
    table = run("compare", "--store", str(store), "--models", str(tmp_path))
    rows = [line.split() for line in table.splitlines()[2:-1]]
    assert sorted(r[1] for r in rows) == ["cnn", "ridge"] and all(r[2] == "C216" for r in rows)
    assert float(rows[0][6]) <= float(rows[1][6])  # sorted by test RMSE
    info = run("info", "--store", str(store))
    assert "C216: 59 snapshots" in info and "done 59, failed 0, pending 0" in info
    export = tmp_path / "sel.nc"
    png = tmp_path / "sel.png"
    q = run("query", "--store", str(store), "--density", "2.4", "--frames", "0:10", "--export", str(export),
            "--plot", str(png))
    assert "10 snapshots selected" in q and "densities (g/cm³) [2.4]" in q
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    sel = xr.open_dataset(export)
    ds = open_store(store).sel(density=2.4, frames=slice(0, 10))
    np.testing.assert_array_equal(sel["ph_histogram"].values, ds["ph_histogram"].values)
    assert sel["ph_histogram"].shape == (10, 128, 128)
    np.testing.assert_allclose(sel["ph_histogram"].sum(axis=(1, 2)), 1, rtol=1e-5)


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
