"""``phstore train <model>``, ``phstore predict`` and ``phstore compare``: models on stored data.

One ``train`` command per model kind of the registry (:mod:`phstore.training.registry`); every
model parameter is an option, with the kind's own defaults (the paper's where it gives them).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from phstore.commands.base import INCOMPLETE, OK, QUIET, STORE, Command, CommandError
from phstore.commands.options import Option, options_of, params_from
from phstore.training.registry import MODELS, ModelKind
from phstore.training.split import Split

#: What PH models may take of PH (``--ph-features``): descriptors of PH diagrams; each one's
#: ``summary`` variable is read.
PH_FEATURES = ("ph", "pimage", "phist")
_SPLIT = {"kind": "split"}


def models_root(store: str) -> Path:
    """Where ``train`` puts model directories by default: ``STORE-models`` beside the store."""
    return Path(f"{store.rstrip('/')}-models")


def metrics_line(m: dict) -> str:
    """One line of regression metrics (:func:`phstore.metrics.regression_metrics`, and a
    potential's forces)."""
    line = f"RMSE {m['rmse_mev']:.1f} meV/atom, MAE {m['mae_mev']:.1f} meV/atom, R² {m['r2']:.3f} ({m['n']} snapshots)"
    if "force_rmse_mev_per_a" in m:
        line += f"; forces RMSE {m['force_rmse_mev_per_a']:.0f} meV/Å, MAE {m['force_mae_mev_per_a']:.0f} meV/Å"
    return line


class Train(Command):
    """Train a model of one kind (:data:`~phstore.training.registry.MODELS`) on stored data; its
    parameters are the kind's parameter dataclass, with the kind's defaults."""

    def __init__(self, kind: ModelKind) -> None:
        self.words, self.help, self.kind = ("train", kind.name), kind.help, kind
        self.features = tuple(getattr(kind.preset, "features", ()))
        self.takes_ph = any(descriptor == "ph" for descriptor, _ in self.features)

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
            Option(
                "dataset",
                "train on this dataset's snapshots (required when the collection holds several), or on those "
                "of several datasets of one code and functional: a shell pattern such as 'md/*'",
            ),
            QUIET,
        ]
        if self.features:
            common.append(
                Option(
                    "descriptor_key",
                    "provenance key (prefix) of the descriptor variant to use, when the store holds several "
                    "(repeatable)",
                    action="append",
                )
            )
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
        return (
            common
            + options_of(Split, group="split", rename=_SPLIT)
            + options_of(self.kind.preset, group=f"{self.kind.name} parameters (defaults: the paper's)")
        )

    def params(self, args: argparse.Namespace) -> Any:
        """The model's parameters from the options (the PH features as ``--ph-features`` says:
        that descriptor's summary variable)."""
        params = params_from(self.kind.preset, args)
        if self.takes_ph:
            from phstore.descriptors import REGISTRY

            chosen = (args.ph_features, REGISTRY[args.ph_features].summary)
            params = dataclasses.replace(params, features=(chosen, *(f for f in self.features if f[0] != "ph")))
        return params

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
        return models_root(args.store) / f"{name}-{self.kind.name}-s{args.seed}"

    def run(self, args: argparse.Namespace) -> int:
        from phstore.training.train import train

        model = train(
            self.kind.name,
            args.store,
            self.collections(args),
            self.output(args),
            self.params(args),
            params_from(Split, args, rename=_SPLIT),
            args.dataset,
            tuple(getattr(args, "descriptor_key", None) or ()),
            progress=not args.quiet,
        )
        n = model.metrics["snapshots"]
        print(
            f"used {n['used']} of the {n['selected']} snapshots of dataset {model.provenance['dataset']!r} "
            f"({n['unlabelled']} without energy, {n['failed']} with failed and {n['pending']} with pending "
            "features left out): "
            f"{n['train']} train, {n['test']} test"
        )
        for part in ("train", "test"):
            print(f"{part:5s} {metrics_line(model.metrics[part])}")
        print(f"model {model.key} written to {model.path}")
        return OK

    def done(self, args: argparse.Namespace) -> bool:
        from phstore.modeldir import load_model_dir

        load_model_dir(self.output(args), self.kind.name)  # raises unless a complete model of this kind is there
        return True


class Predict(Command):
    words = ("predict",)
    help = "predict a collection's energies with a trained model and store them (exit 3 if some had no features)"

    def options(self) -> list[Option]:
        return [
            Option("model", "model directory written by `phstore train`", required=True),
            STORE,
            Option("collection", "e.g. C512 for a model trained on C216 (transfer)", required=True),
            QUIET,
        ]

    def run(self, args: argparse.Namespace) -> int:
        from phstore.training.predict import predict

        report = predict(args.model, args.store, args.collection, progress=not args.quiet)
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
        from phstore.modeldir import load_model_dir
        from phstore.store import PENDING, FeatureStore
        from phstore.training.predict import prediction_group

        group = prediction_group(load_model_dir(args.model))
        store = FeatureStore(args.store, mode="r")
        return (
            group in store.descriptor_groups(args.collection)
            and not (store.status(args.collection, group) == PENDING).any()
        )


class Compare(Command):
    words = ("compare",)
    help = "one table of every trained model's train and test errors (meV/atom), and on collections it predicted"

    def options(self) -> list[Option]:
        return [STORE, Option("models", "directory searched for model directories (default: STORE-models)")]

    def run(self, args: argparse.Namespace) -> int:
        from phstore.modeldir import find_models
        from phstore.store import FeatureStore
        from phstore.training.predict import transfer_metrics

        root = Path(args.models) if args.models else models_root(args.store)
        models = find_models(root, args.store)
        if not models:
            raise CommandError(
                f"no models of {args.store} under {root}; train one with `phstore train` (or pass --models DIR)"
            )
        store = FeatureStore(args.store, mode="r")
        transfer = {m.path: transfer_metrics(store, m) for m in models}
        others = sorted({c for t in transfer.values() for c in t})
        header = (
            f"{'model':28s} {'kind':10s} {'features':9s} {'dataset':14s} {'collections':14s} {'split':10s} "
            f"{'n train/test':>12s} {'train RMSE':>10s} {'test RMSE':>9s} {'test MAE':>8s} {'test R²':>7s} "
            f"{'test F RMSE':>11s}" + "".join(f" {c + ' RMSE':>10s}" for c in others)
        )
        print(header + "\n" + "-" * len(header))
        datasets = sorted({m.provenance["dataset"] for m in models})
        for m in sorted(models, key=lambda m: (m.provenance["dataset"], m.metrics["test"]["rmse_mev"])):
            tr, te = m.metrics["train"], m.metrics["test"]
            name = str(m.path.relative_to(root)) if m.path.is_relative_to(root) else str(m.path)
            features = "+".join(d for d, _ in m.config.get("features", [])) or "positions"
            print(
                f"{name[:28]:28s} {m.kind:10s} {features[:9]:9s} {m.provenance['dataset'][:14]:14s} "
                f"{'+'.join(m.provenance['collections'])[:14]:14s} "
                f"{m.config['split']['kind']:10s} {tr['n']:>5d}/{te['n']:<6d} {tr['rmse_mev']:10.1f} "
                f"{te['rmse_mev']:9.1f} {te['mae_mev']:8.1f} {te['r2']:7.3f} "
                f"{format(te['force_rmse_mev_per_a'], '11.0f') if 'force_rmse_mev_per_a' in te else '-':>11s}"
                + "".join(
                    f" {format(transfer[m.path][c]['rmse_mev'], '10.1f') if c in transfer[m.path] else '-':>10s}"
                    for c in others
                )
            )
        print(
            "(RMSE and MAE in meV/atom, forces' RMSE in meV/Å"
            + (f"; {', '.join(others)}: stored predictions of collections not trained on" * bool(others))
            + (
                f"; ranked within each dataset: errors on {len(datasets)} datasets are not comparable)"
                if len(datasets) > 1
                else ")"
            )
        )
        return OK


COMMANDS = [*(Train(kind) for kind in MODELS.values()), Predict(), Compare()]
