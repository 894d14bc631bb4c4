"""`phstore run`: pipeline files become phstore command lines; stages already done are skipped."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import yaml

from phstore import open_store
from phstore.commands import build_parser, find
from phstore.pipeline import Stage, done, load_pipeline, run_pipeline, stage_argv
from tests.helpers import ROOT, run, write_trajectory


def test_options_become_the_commands_own_arguments():
    soap = find(["featurize", "soap"])
    argv = stage_argv(
        soap,
        {
            "store": "s.zarr",
            "collection": ["C64", "C216"],
            "species": ["C", "H"],
            "retry_failed": True,
            "quiet": False,
            "r-cut": 5,
        },
    )
    assert argv == (
        "featurize",
        "soap",
        "--store",
        "s.zarr",
        "--collection",
        "C64",
        "--collection",
        "C216",
        "--species",
        "C",
        "H",
        "--retry-failed",
        "--r-cut",
        "5",
    )
    assert stage_argv(find(["ingest"]), {"sources": ["a", "b"], "store": "s"}) == ("ingest", "--store", "s", "a", "b")
    parsed = build_parser().parse_args(argv)
    assert parsed.collection == ["C64", "C216"] and parsed.r_cut == 5.0 and parsed.retry_failed
    assert parsed.command is soap
    with pytest.raises(ValueError, match="has no option 'epoch'"):
        stage_argv(find(["train", "cnn"]), {"epoch": 3})
    with pytest.raises(ValueError, match="unknown command 'fit'"):
        find(["fit"])
    assert stage_argv(find(["analyze", "maps"]), {"collection": "C216", "perplexity": [10, 30]}) == (
        "analyze",
        "maps",
        "--collection",
        "C216",
        "--perplexity",
        "10",
        "30",
    )


@pytest.mark.parametrize(
    "value, word, parsed",
    [(True, "--tls", True), (False, "--no-tls", False), ("false", "--no-tls", False), (None, None, None)],
)
def test_a_pipeline_turns_tls_on_and_off(value, word, parsed):
    """`tls: true` once became `--no-tls True` and `tls: false` was dropped as a default."""
    featurize = find(["featurize", "ph"])
    argv = stage_argv(featurize, {"store": "s", "tls": value})
    assert argv == ("featurize", "ph", "--store", "s", *([word] if word else []))
    assert build_parser().parse_args(argv).tls is parsed


def test_switches_and_pairs_of_descriptor_parameters_in_a_pipeline():
    argv = stage_argv(find(["featurize", "pimage"]), {"store": "s", "ph_truncate": False, "birth_range": [0, 4]})
    args = build_parser().parse_args(argv)
    assert not args.command.descriptor(args).params.ph.truncate
    assert args.command.descriptor(args).params.birth_range == (0.0, 4.0)
    with pytest.raises(ValueError, match="takes true or false"):
        stage_argv(find(["featurize", "ph"]), {"truncate": "maybe"})


def test_vars_store_and_overrides(tmp_path):
    spec = {
        "vars": {"out": "o", "n": 4, "tls": ""},
        "store": "{out}/s.zarr",
        "scheduler": "tcp://127.0.0.1:8786",
        "tls": "{tls}",
        "stages": [{"ingest": {"sources": ["{out}/data"]}}, {"featurize ph": {"workers": "{n}"}}, {"compare": None}],
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    stages = load_pipeline(path, {"out": "elsewhere"})
    ingest_argv = ("ingest", "--store", "elsewhere/s.zarr", "--scheduler", "tcp://127.0.0.1:8786", "elsewhere/data")
    assert stages[0] == Stage(find(["ingest"]), ingest_argv)  # ingest parses on the workers too
    assert stages[1].argv == (
        "featurize",
        "ph",
        "--store",
        "elsewhere/s.zarr",
        "--scheduler",
        "tcp://127.0.0.1:8786",
        "--workers",
        "4",
    )
    assert stages[2].argv == ("compare", "--store", "elsewhere/s.zarr")  # compare takes no --scheduler
    assert "--no-tls" in load_pipeline(path, {"tls": "false"})[1].argv
    path.write_text(yaml.safe_dump({"stages": [{"ingest": {"sources": ["{nope}"]}}]}))
    with pytest.raises(ValueError, match="not in the pipeline's vars"):
        load_pipeline(path)
    path.write_text(yaml.safe_dump({"stage": []}))
    with pytest.raises(ValueError, match="needs a list of `stages`"):
        load_pipeline(path)


def test_a_pipeline_runs_and_a_second_run_skips_what_is_done(tiny_source, tmp_path):
    pipeline = tmp_path / "small.yaml"
    spec = {
        "vars": {"out": str(tmp_path / "out")},
        "store": "{out}/s.zarr",
        "stages": [
            {"ingest": {"sources": [str(tiny_source)], "chunk_size": 4, "quiet": True, "dataset": "tersoff"}},
            {"featurize soap": {"workers": 1, "quiet": True}},
            {"train ridge": {"out": "{out}/models/ridge"}},  # Ridge needs PH: fails
            {"train soap-mlp": {"epochs": 5, "out": "{out}/models/mlp", "quiet": True}},
            {"predict": {"model": "{out}/models/mlp", "collection": "C64"}},
            {"compare": {"models": "{out}/models"}},
        ],
    }
    pipeline.write_text(yaml.safe_dump(spec))
    failed = subprocess.run([sys.executable, "-m", "phstore", "run", str(pipeline)], capture_output=True, text=True)
    assert failed.returncode == 1 and "stage 3 (train ridge) failed" in failed.stdout and "[4/6]" not in failed.stdout
    assert "run `phstore featurize ph` first" in failed.stderr
    del spec["stages"][2]
    pipeline.write_text(yaml.safe_dump(spec))
    first = run("run", str(pipeline))
    assert "[1/5] done, skipped" in first and "[2/5] done, skipped" in first and "predicted 11 snapshots" in first
    times = [json.loads(line) for line in (tmp_path / "out" / "pipeline-stages.jsonl").read_text().splitlines()]
    ran = [t for t in times if t["stage"] >= 3]  # this run's: the failed run timed its first three
    assert [t["stage"] for t in ran] == [3, 3, 4, 5] and ran[0]["exit"] == 1 and ran[1]["exit"] == 0
    assert all(t["wall_s"] > 0 and t["cpu_s"] > 0 for t in times) and "[3/5] took " in first
    model = tmp_path / "out" / "models" / "mlp" / "model.json"
    stamp = model.stat().st_mtime_ns
    second = run("run", str(pipeline))
    skipped = [line for line in second.splitlines() if "done, skipped" in line]
    assert len(skipped) == 4 and "[5/5] phstore compare" in second and "soap-mlp" in second
    assert model.stat().st_mtime_ns == stamp
    # new data: ingest and featurize run again, only for what is new
    write_trajectory(tiny_source / "64atom_amorphous" / "run3.xyz", 4, density=2.5, seed=3)
    stages = load_pipeline(pipeline)
    assert not done(stages[0]) and done(stages[1])
    third = run("run", str(pipeline))
    assert "added C64: 4; 0 duplicates skipped" in third and "computed 4 snapshots" in third
    assert re.search(r"; [1-9] files ingested before skipped", third)  # known by content: not read again
    assert "[3/5] done, skipped" in third  # a trained model stays as it was


def test_stage_cpu_time_counts_the_processes_a_stage_started():
    """A child that spins for 0.5 s of CPU counts in :func:`cpu_seconds` once it is waited for
    (as a local cluster's workers are when the stage closes it)."""
    from phstore.pipeline import cpu_seconds

    before = cpu_seconds()
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    subprocess.run([sys.executable, "-c", spin], check=True)
    assert cpu_seconds() - before >= 0.5


def test_the_plan_of_a_pipeline_with_an_incomplete_stage_prints(tmp_path, capsys):
    """The plan of a pipeline whose second stage lacks a required option still prints (dry run),
    not only the stages before it."""
    pipeline = tmp_path / "p.yaml"
    spec = {"store": str(tmp_path / "s.zarr"), "stages": [{"info": {}}, {"predict": {"collection": "C64"}}]}
    pipeline.write_text(yaml.safe_dump(spec))
    assert run_pipeline(pipeline, dry_run=True) == 0
    assert "[2/2] phstore predict" in capsys.readouterr().out


def test_the_shipped_pipelines_parse():
    parser = build_parser()
    for path in sorted((ROOT / "pipelines").glob("*.yaml")):
        stages = load_pipeline(path)
        assert stages and all(parser.parse_args(s.argv).command is s.command for s in stages)
    assert {p.stem for p in (ROOT / "pipelines").glob("*.yaml")} >= {"quick", "paper"}


@pytest.mark.slow
def test_quick_pipeline_end_to_end(tmp_path):
    """The README's demo, `make demo`, as it ships (generated data, every stage; one melt-quench
    run per density instead of two, to keep the suite short), then a re-run that skips every
    stage but the reports."""
    out = run("run", "pipelines/quick.yaml", "--set", f"out={tmp_path}", "--set", "runs=1")
    assert "predicted" in out and "RMSE" in out and "parity plot" in out
    assert "dashboard http://127.0.0.1:" in out and "0 failed" in out
    table = out[out.index("phstore compare") :].splitlines()[3:8]
    assert sorted(line.split()[1] for line in table) == ["cnn", "ph-soap", "ridge", "ridge", "soap-mlp"]
    assert "C216: " in out and "pending 0" in out and "pending 1" not in out  # info
    with xr.open_dataset(tmp_path / "density-2.4.nc") as sel:  # closed before the re-run rewrites it
        exported = sel["ph_histogram"].values
    ds = open_store(tmp_path / "store.zarr").sel("C216", density=2.4)
    np.testing.assert_array_equal(exported, ds["ph_histogram"].values)
    np.testing.assert_allclose(exported.sum(axis=(1, 2)), 1, rtol=1e-5)
    assert (tmp_path / "analysis" / "maps-tsne_p30.png").exists() and (
        tmp_path / "models" / "ridge" / "ridge-map.png"
    ).exists()
    for kind in ("ridge", "cnn", "soap-mlp", "ph-soap"):
        assert (tmp_path / "models" / kind / "parity.png").exists()
    assert (tmp_path / "models" / "ridge" / "parity-C512.png").exists()
    assert (tmp_path / "density-2.4.png").exists() and (tmp_path / "density-2.4.nc").exists()
    assert (tmp_path / "density-2.4-diagram.png").exists()
    assert (tmp_path / "models" / "ridge-pimage" / "parity.png").exists()  # Ridge on the persistence images
    again = run("run", "pipelines/quick.yaml", "--set", f"out={tmp_path}", "--set", "runs=1")
    assert again.count("done, skipped") == 11
