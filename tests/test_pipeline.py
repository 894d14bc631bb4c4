"""`phstore run`: pipeline files become phstore command lines; stages already done are skipped."""

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import yaml

from phstore import open_store
from phstore.cli import build_parser
from phstore.pipeline import Stage, done, load_pipeline, stage_argv
from tests.helpers import ROOT, run, write_trajectory

def test_options_become_the_commands_own_arguments():
    parser = build_parser()
    argv = stage_argv(parser, "featurize", {"store": "s.zarr", "descriptor": "soap", "collection": ["C64", "C216"],
                                            "species": ["C", "H"], "retry_failed": True, "quiet": False, "r-cut": 5})
    assert argv == ("featurize", "--store", "s.zarr", "--descriptor", "soap", "--collection", "C64", "--collection",
                    "C216", "--species", "C", "H", "--retry-failed", "--r-cut", "5")
    assert stage_argv(parser, "ingest", {"sources": ["a", "b"], "store": "s"}) == ("ingest", "--store", "s", "a", "b")
    parsed = parser.parse_args(argv)
    assert parsed.collection == ["C64", "C216"] and parsed.r_cut == 5.0 and parsed.retry_failed
    with pytest.raises(ValueError, match="has no option 'epoch'"):
        stage_argv(parser, "train", {"epoch": 3})
    with pytest.raises(ValueError, match="unknown command 'fit'"):
        stage_argv(parser, "fit", {})
    assert stage_argv(parser, "analyze maps", {"collection": "C216", "perplexity": [10, 30]}) == (
        "analyze", "maps", "--collection", "C216", "--perplexity", "10", "30")


def test_vars_store_and_overrides(tmp_path):
    spec = {"vars": {"out": "o", "n": 4}, "store": "{out}/s.zarr", "scheduler": "tcp://127.0.0.1:8786",
            "stages": [{"ingest": {"sources": ["{out}/data"]}}, {"featurize": {"workers": "{n}"}}, {"compare": None}]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    stages = load_pipeline(path, build_parser(), {"out": "elsewhere"})
    assert stages[0] == Stage("ingest", ("ingest", "--store", "elsewhere/s.zarr", "elsewhere/data"))
    assert stages[1].argv == ("featurize", "--store", "elsewhere/s.zarr", "--scheduler", "tcp://127.0.0.1:8786",
                              "--workers", "4")
    assert stages[2].argv == ("compare", "--store", "elsewhere/s.zarr")  # compare takes no --scheduler
    path.write_text(yaml.safe_dump({"stages": [{"ingest": {"sources": ["{nope}"]}}]}))
    with pytest.raises(ValueError, match="not in the pipeline's vars"):
        load_pipeline(path, build_parser())
    path.write_text(yaml.safe_dump({"stage": []}))
    with pytest.raises(ValueError, match="needs a list of `stages`"):
        load_pipeline(path, build_parser())


def test_a_pipeline_runs_and_a_second_run_skips_what_is_done(tiny_source, tmp_path):
    pipeline = tmp_path / "small.yaml"
    spec = {
        "vars": {"out": str(tmp_path / "out")},
        "store": "{out}/s.zarr",
        "stages": [
            {"ingest": {"sources": [str(tiny_source)], "chunk_size": 4, "quiet": True}},
            {"featurize": {"descriptor": "soap", "workers": 1, "quiet": True}},
            {"train": {"model": "ridge", "out": "{out}/models/ridge"}},  # Ridge needs PH: fails
            {"train": {"model": "soap-mlp", "epochs": 5, "out": "{out}/models/mlp", "quiet": True}},
            {"predict": {"model": "{out}/models/mlp", "collection": "C64"}},
            {"compare": {"models": "{out}/models"}},
        ],
    }
    pipeline.write_text(yaml.safe_dump(spec))
    failed = subprocess.run([sys.executable, "-m", "phstore.cli", "run", str(pipeline)], capture_output=True, text=True)
    assert failed.returncode == 1 and "stage 3 (train) failed" in failed.stdout and "[4/6]" not in failed.stdout
    assert "run `phstore featurize --descriptor ph` first" in failed.stderr
    del spec["stages"][2]
    pipeline.write_text(yaml.safe_dump(spec))
    first = run("run", str(pipeline))
    assert "[1/5] done, skipped" in first and "[2/5] done, skipped" in first and "predicted 11 snapshots" in first
    model = tmp_path / "out" / "models" / "mlp" / "model.json"
    stamp = model.stat().st_mtime_ns
    second = run("run", str(pipeline))
    skipped = [line for line in second.splitlines() if "done, skipped" in line]
    assert len(skipped) == 4 and "[5/5] phstore compare" in second and "soap-mlp" in second
    assert model.stat().st_mtime_ns == stamp
    # new data: ingest and featurize run again, only for what is new
    write_trajectory(tiny_source / "64atom_amorphous" / "run3.xyz", 4, density=2.5, seed=3)
    stages = load_pipeline(pipeline, build_parser())
    assert not done(build_parser(), stages[0]) and done(build_parser(), stages[1])
    third = run("run", str(pipeline))
    assert "added C64: 4; 11 duplicates skipped" in third and "computed 4 snapshots" in third
    assert "[3/5] done, skipped" in third  # a trained model stays as it was


def test_the_shipped_pipelines_parse():
    parser = build_parser()
    for path in sorted((ROOT / "pipelines").glob("*.yaml")):
        stages = load_pipeline(path, parser)
        assert stages and all(parser.parse_args(s.argv).command == s.command.split()[0] for s in stages)
    assert {p.stem for p in (ROOT / "pipelines").glob("*.yaml")} >= {"quick", "paper"}


@pytest.mark.slow
def test_quick_pipeline_end_to_end(tmp_path):
    """The README's demo, `make demo`, as it ships (generated data, every stage; one melt-quench
    run per density instead of two, to keep the suite short), then a re-run that skips every
    stage but the reports."""
    out = run("run", "pipelines/quick.yaml", "--set", f"out={tmp_path}", "--set", "runs=1")
    assert "predicted" in out and "RMSE" in out and "parity plot" in out
    assert "dashboard http://127.0.0.1:" in out and "0 failed" in out
    table = out[out.index("phstore compare"):].splitlines()[3:8]
    assert sorted(line.split()[1] for line in table) == ["cnn", "ph-soap", "ridge", "ridge", "soap-mlp"]
    assert "C216: " in out and "pending 0" in out and "pending 1" not in out  # info
    with xr.open_dataset(tmp_path / "density-2.4.nc") as sel:  # closed before the re-run rewrites it
        exported = sel["ph_histogram"].values
    ds = open_store(tmp_path / "store.zarr").sel("C216", density=2.4)
    np.testing.assert_array_equal(exported, ds["ph_histogram"].values)
    np.testing.assert_allclose(exported.sum(axis=(1, 2)), 1, rtol=1e-5)
    assert (tmp_path / "analysis" / "maps-tsne_p30.png").exists() and (tmp_path / "models" / "ridge" / "ridge-map.png").exists()
    for kind in ("ridge", "cnn", "soap-mlp", "ph-soap"):
        assert (tmp_path / "models" / kind / "parity.png").exists()
    assert (tmp_path / "models" / "ridge" / "parity-C512.png").exists()
    assert (tmp_path / "density-2.4.png").exists() and (tmp_path / "density-2.4.nc").exists()
    assert (tmp_path / "density-2.4-diagram.png").exists()
    assert (tmp_path / "models" / "ridge-pimage" / "parity.png").exists()  # Ridge on the persistence images
    again = run("run", "pipelines/quick.yaml", "--set", f"out={tmp_path}", "--set", "runs=1")
    assert again.count("done, skipped") == 11
