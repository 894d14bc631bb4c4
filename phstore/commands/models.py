"""``phstore train <model>``, ``phstore predict`` and ``phstore compare``: models on stored data.

Every model parameter is an option (:mod:`phstore.training.params`), with the model's own
defaults (the paper's where it gives them).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from phstore.commands.base import INCOMPLETE, OK, QUIET, STORE, Command, CommandError
from phstore.commands.options import Option, options_of, params_from
from phstore.training.params import NeuralConfig, RidgeConfig, SchNetArchitecture, SchNetTraining
from phstore.training.split import Split

#: What PH models may take of PH (``--ph-features``): descriptors of PH diagrams; each one's
#: ``summary`` variable is read.
PH_FEATURES = ("ph", "pimage", "phist")
_SPLIT = {"kind": "split"}


def models_root(store: str) -> Path:
    """Where ``train`` puts model directories by default: ``STORE-models`` beside the store."""
    return Path(f"{store.rstrip('/')}-models")


def metrics_line(m: dict) -> str:
    """One line of regression metrics (:func:`phstore.training.metrics.regression_metrics`)."""
    return f"RMSE {m['rmse_mev']:.1f} meV/atom, MAE {m['mae_mev']:.1f} meV/atom, R² {m['r2']:.3f} ({m['n']} snapshots)"


class Train(Command):
    """Train the model ``kind`` on stored data. Subclasses say which parameters it has
    (:meth:`model_options`) and how it is fitted (:meth:`fit`)."""

    takes_ph = False

    def __init__(self, kind: str, help: str) -> None:
        self.words, self.help, self.kind = ("train", kind), help, kind

    def options(self) -> list[Option]:
        common = [
            STORE,
            Option(
                "collection",
                "collection to train on (repeatable: several cell sizes of one dataset train "
                "together; 'all': every collection; required when the store holds several)",
                action="append",
            ),
            Option("out", "model directory (default: STORE-models/COLLECTION-MODEL-sSEED)"),
            Option("dataset", "train on this dataset's snapshots (required when the collection holds several)"),
            Option(
                "descriptor_key",
                "provenance key (prefix) of the descriptor variant to use, when the store holds several (repeatable)",
                action="append",
            ),
            QUIET,
        ]
        if self.takes_ph:
            common.append(
                Option(
                    "ph_features",
                    "what the model takes of PH: ph, the PH descriptor's histogram; "
                    "pimage, persistence images; phist, histograms of the stored diagrams (featurize "
                    "them first; default ph)",
                    choices=PH_FEATURES,
                    default="ph",
                )
            )
        return common + options_of(Split, group="split", rename=_SPLIT) + self.model_options()

    def model_options(self) -> list[Option]:
        raise NotImplementedError

    def fit(self, args: argparse.Namespace, collections: list[str], out: Path, split: Split) -> Any:
        """Train and write the model directory; return its :class:`~phstore.training.modeldir.ModelDir`."""
        raise NotImplementedError

    def collections(self, args: argparse.Namespace) -> list[str]:
        """The collections the options name (``all``: every one; none: the store's only one)."""
        from phstore.store import FeatureStore

        if args.collection not in (None, ["all"]):
            return args.collection
        stored = FeatureStore(args.store, mode="r").collections
        if len(stored) != 1 and not args.collection:
            raise CommandError(f"the store holds collections {stored}; choose one or more with --collection (or all)")
        return stored

    def output(self, args: argparse.Namespace) -> Path:
        """The model directory: ``--out``, or STORE-models/COLLECTIONS-KIND-sSEED."""
        if args.out:
            return Path(args.out)
        name = "all" if args.collection == ["all"] else "+".join(self.collections(args))
        return models_root(args.store) / f"{name}-{self.kind}-s{args.seed}"

    def run(self, args: argparse.Namespace) -> int:
        model = self.fit(args, self.collections(args), self.output(args), params_from(Split, args, rename=_SPLIT))
        for part in ("train", "test"):
            print(f"{part:5s} {metrics_line(model.metrics[part])}")
        print(f"model {model.key} written to {model.path}")
        return OK

    def done(self, args: argparse.Namespace) -> bool:
        from phstore.training.modeldir import load_model_dir

        load_model_dir(self.output(args), self.kind)  # raises unless a complete model of this kind is there
        return True

    def features(self, args: argparse.Namespace, others: tuple = ()) -> tuple:
        """The stored features a PH model reads: ``--ph-features``' summary variable, then ``others``."""
        from phstore.descriptors import REGISTRY

        return ((args.ph_features, REGISTRY[args.ph_features].summary), *others)


class TrainRidge(Train):
    takes_ph = True

    def model_options(self) -> list[Option]:
        return options_of(RidgeConfig, group="ridge parameters")

    def fit(self, args: argparse.Namespace, collections: list[str], out: Path, split: Split) -> Any:
        from phstore.training.ridge import train_ridge

        config = params_from(RidgeConfig(features=self.features(args)), args)
        return train_ridge(args.store, collections, out, config, split, args.dataset, tuple(args.descriptor_key or ()))


class TrainNeural(Train):
    """A network on stored features; ``preset`` is its configuration (the paper's)."""

    def __init__(self, kind: str, help: str, preset: NeuralConfig) -> None:
        super().__init__(kind, help)
        self.preset = preset
        self.takes_ph = any(descriptor == "ph" for descriptor, _ in preset.features)

    def model_options(self) -> list[Option]:
        return options_of(self.preset, group=f"{self.kind} parameters (defaults: the paper's)")

    def fit(self, args: argparse.Namespace, collections: list[str], out: Path, split: Split) -> Any:
        from phstore.training.neural import train_neural

        features = self.preset.features
        if self.takes_ph:
            features = self.features(args, tuple(f for f in features if f[0] != "ph"))
        config = dataclasses.replace(params_from(self.preset, args), features=features)
        return train_neural(
            args.store,
            collections,
            out,
            config,
            split,
            args.dataset,
            tuple(args.descriptor_key or ()),
            progress=not args.quiet,
        )


class TrainSchNet(Train):
    def model_options(self) -> list[Option]:
        return options_of(SchNetArchitecture, group="schnet architecture (seed paper §2.4)") + options_of(
            SchNetTraining, group="schnet training"
        )

    def fit(self, args: argparse.Namespace, collections: list[str], out: Path, split: Split) -> Any:
        from phstore.training.schnet import train_schnet

        return train_schnet(
            args.store,
            collections,
            out,
            params_from(SchNetArchitecture, args),
            params_from(SchNetTraining, args),
            split,
            args.dataset,
            progress=not args.quiet,
        )


class Predict(Command):
    words = ("predict",)
    help = "predict a collection's energies with a trained model and store them (exit 3 if some had no features)"

    def options(self) -> list[Option]:
        return [
            Option("model", "model directory written by `phstore train`", required=True),
            STORE,
            Option("collection", "e.g. C512 for a model trained on C216 (transfer)", required=True),
        ]

    def run(self, args: argparse.Namespace) -> int:
        from phstore.training.predict import predict

        report = predict(args.model, args.store, args.collection)
        print(
            f"{report.group}: predicted {report.predicted} snapshots of {args.collection}, "
            f"{report.failed} without features"
        )
        if report.metrics is None:
            print("no snapshot of the model's dataset in this collection: energies not comparable, no errors computed")
        else:
            print(metrics_line(report.metrics))
            print(f"parity plot: {report.plot}")
        return INCOMPLETE if report.failed else OK

    def done(self, args: argparse.Namespace) -> bool:
        from phstore.store import PENDING, FeatureStore
        from phstore.training.modeldir import load_model_dir
        from phstore.training.predict import prediction_group

        group = prediction_group(load_model_dir(args.model))
        store = FeatureStore(args.store, mode="r")
        return (
            group in store.descriptor_groups(args.collection)
            and not (store.status(args.collection, group) == PENDING).any()
        )


class Compare(Command):
    words = ("compare",)
    help = "one table of every trained model's train and test errors (meV/atom)"

    def options(self) -> list[Option]:
        return [STORE, Option("models", "directory searched for model directories (default: STORE-models)")]

    def run(self, args: argparse.Namespace) -> int:
        from phstore.training.modeldir import find_models

        root = Path(args.models) if args.models else models_root(args.store)
        models = find_models(root, args.store)
        if not models:
            raise CommandError(
                f"no models of {args.store} under {root}; train one with `phstore train` (or pass --models DIR)"
            )
        header = (
            f"{'model':28s} {'kind':9s} {'collections':14s} {'split':10s} {'n train/test':>12s} "
            f"{'train RMSE':>10s} {'test RMSE':>9s} {'test MAE':>8s} {'test R²':>7s}"
        )
        print(header + "\n" + "-" * len(header))
        for m in sorted(models, key=lambda m: m.metrics["test"]["rmse_mev"]):
            tr, te = m.metrics["train"], m.metrics["test"]
            name = str(m.path.relative_to(root)) if m.path.is_relative_to(root) else str(m.path)
            print(
                f"{name[:28]:28s} {m.kind:9s} {'+'.join(m.provenance['collections'])[:14]:14s} "
                f"{m.config['split']['kind']:10s} {tr['n']:>5d}/{te['n']:<6d} {tr['rmse_mev']:10.1f} "
                f"{te['rmse_mev']:9.1f} {te['mae_mev']:8.1f} {te['r2']:7.3f}"
            )
        print("(RMSE and MAE in meV/atom)")
        return OK


COMMANDS = [
    TrainRidge("ridge", "Ridge regression on the PH histograms (seed paper §2.5; alpha 200)"),
    TrainNeural("cnn", "the paper's CNN on the PH histograms (§2.6)", NeuralConfig.cnn()),
    TrainNeural("soap-mlp", "MLP (40, 40) on atom-mean SOAP (§2.7)", NeuralConfig.soap_mlp()),
    TrainNeural("ph-soap", "the SOAP MLP on the PH histogram and SOAP concatenated", NeuralConfig.ph_soap()),
    TrainSchNet("schnet", "SchNet on positions and energies (§2.4)"),
    Predict(),
    Compare(),
]
