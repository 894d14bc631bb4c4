"""Parameters are checked where they enter: a dataclass when it is made, an option when the
command line (or a pipeline file) is parsed, the few plain arguments of the API at the call."""

import dataclasses
import math

import pytest

from phstore.cli import main
from phstore.cluster_options import ClusterOptions
from phstore.descriptors import DiagramHistogramParams, PersistenceImageParams, PHExecution, PHParams, SOAPParams
from phstore.isolation import runner_for
from phstore.params import MAX_SECONDS, ParameterError, Parameters
from phstore.store import FeatureStore
from phstore.training.params import NeuralConfig, RidgeConfig, SchNetConfig
from phstore.training.split import Split
from tests.helpers import write_trajectory

#: Every parameter dataclass an option or a pipeline file builds.
CLASSES = (
    PHParams,
    PHExecution,
    SOAPParams,
    PersistenceImageParams,
    DiagramHistogramParams,
    RidgeConfig,
    NeuralConfig,
    SchNetConfig,
    Split,
    ClusterOptions,
)

BAD = [
    (PHExecution, "time_limit", 1e308),
    (PHExecution, "time_limit", math.nan),
    (PHExecution, "time_limit", 0.0),
    (PHExecution, "time_limit", math.inf),
    (PHParams, "bins", 0),
    (PHParams, "range", (8.0, 0.0)),
    (PHParams, "range", (-1.0, 8.0)),
    (PHParams, "degrees", (0, 3)),
    (PHParams, "histogram_degree", 5),
    (PHParams, "engine", "gudhi"),
    (PHParams, "min_persistence", -1e-5),
    (SOAPParams, "sigma", 0.0),
    (SOAPParams, "r_cut", math.nan),
    (PersistenceImageParams, "persistence_range", (3.0, 3.0)),
    (NeuralConfig, "epochs", 0),
    (NeuralConfig, "lr", -0.1),
    (NeuralConfig, "milestones", (200, 0)),
    (NeuralConfig, "momentum", 1.5),
    (SchNetConfig, "batch_size", 0),
    (RidgeConfig, "alpha", -1.0),
    (Split, "test_fraction", 1.0),
    (ClusterOptions, "workers", 0),
]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_parameter_dataclass_checks_its_fields_and_its_defaults_pass(cls):
    assert issubclass(cls, Parameters)
    cls()  # the defaults are values it takes
    rules = [{k for k, v in f.metadata.items() if v is not None and v is not False} for f in dataclasses.fields(cls)]
    assert any({"low", "positive", "choices"} & r for r in rules)


@pytest.mark.parametrize("cls, name, value", BAD, ids=lambda x: getattr(x, "__name__", str(x)))
def test_a_bad_value_is_refused_with_one_line_naming_it(cls, name, value):
    with pytest.raises(ParameterError, match=rf"^{name} must be .*, not ") as info:
        cls(**{name: value})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["featurize", "ph", "--time-limit", "1e308"], "argument --time-limit: must be > 0 and ≤ 1e+06"),
        (["featurize", "ph", "--time-limit", "nan"], "argument --time-limit: must be > 0"),
        (["featurize", "ph", "--bins", "-3"], "argument --bins: must be ≥ 1, not -3"),
        (["train", "cnn", "--epochs", "0"], "argument --epochs: must be ≥ 1, not 0"),
        (["ingest", "SRC", "--chunk-size", "0"], "argument --chunk-size: must be ≥ 1, not 0"),
        (["ingest", "SRC", "--min-distance", "-1"], "argument --min-distance: must be ≥ 0"),
        (["query", "--density", "2.4", "--density-tol", "nan"], "argument --density-tol: must be ≥ 0"),
        (["analyze", "inverse", "--model", "m", "--collection", "c", "--time-limit", "inf"], "--time-limit"),
    ],
)
def test_the_command_line_refuses_a_bad_value_before_anything_runs(tmp_path, capsys, argv, message):
    store = tmp_path / "store"
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--store", str(store)])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not store.exists()


def test_a_range_given_backwards_on_the_command_line_is_one_line_and_exit_1(tmp_path, capsys):
    source = write_trajectory(tmp_path / "t.extxyz", 2, n_side=2)
    store = tmp_path / "store"
    assert main(["ingest", str(source), "--store", str(store), "--quiet"]) == 0
    assert main(["featurize", "ph", "--store", str(store), "--range", "8", "0", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["phstore: range must be a range LOW HIGH with LOW < HIGH, not 8.0 0.0"]
    assert FeatureStore(store).descriptor_groups("C8") == {}  # nothing was created


def test_plain_arguments_of_the_api_are_checked(tmp_path):
    with pytest.raises(ParameterError, match="time_limit must be > 0 and ≤ 1e\\+06 s, not 1e\\+308"):
        runner_for((), 1e308)
    runner_for((), MAX_SECONDS)  # the largest is taken
    source = write_trajectory(tmp_path / "t.extxyz", 2, n_side=2)
    assert main(["ingest", str(source), "--store", str(tmp_path / "s"), "--quiet"]) == 0
    with pytest.raises(ParameterError, match="density_tol must be ≥ 0 g/cm³, not -0.1"):
        FeatureStore(tmp_path / "s").select(density=2.4, density_tol=-0.1)
