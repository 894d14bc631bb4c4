"""``phstore featurize <descriptor>``: a descriptor of every pending snapshot, on Dask workers.

Each descriptor whose parameters are a dataclass (:mod:`phstore.descriptors.params`) offers
every field as an option; SchNet's come from the trained model it names.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from phstore.commands.base import CLUSTER_OPTIONS, ERROR, INCOMPLETE, OK, QUIET, STORE, Command, cluster_options
from phstore.commands.options import Option, options_of, params_from
from phstore.descriptors.params import DiagramHistogramParams, PersistenceImageParams, PHParams, SOAPParams


class Featurize(Command):
    """Featurize with the descriptor ``name`` (a key of :data:`phstore.descriptors.REGISTRY`)
    whose parameters are ``params``; ``settings`` are its execution settings (not provenance)."""

    def __init__(self, name: str, help: str, params: type | None, settings: tuple[Option, ...] = ()) -> None:
        self.words, self.help = ("featurize", name), help
        self.descriptor_name, self.params, self.settings = name, params, settings

    def options(self) -> list[Option]:
        common = [
            STORE,
            Option("collection", "only this collection (repeatable)", action="append"),
            Option("retry_failed", "compute failed snapshots again", action="flag"),
            QUIET,
        ]
        return common + self.descriptor_options() + CLUSTER_OPTIONS

    def descriptor_options(self) -> list[Option]:
        """The options that choose the descriptor variant (and its execution settings)."""
        group = f"{self.descriptor_name} parameters (enter the provenance key)"
        return options_of(self.params, group=group) + list(self.settings)

    def descriptor(self, args: argparse.Namespace) -> Any:
        """The descriptor the options describe."""
        from phstore.descriptors import REGISTRY

        settings = {o.name: getattr(args, o.name) for o in self.settings if getattr(args, o.name) is not None}
        return REGISTRY[self.descriptor_name](params_from(self.params, args), **settings)

    def run(self, args: argparse.Namespace) -> int:
        from phstore.cluster import connect, describe
        from phstore.featurize import featurize
        from phstore.store import FeatureStore

        descriptor = self.descriptor(args)
        # the store's writer lock first: a second run stops before it starts a cluster
        with (
            FeatureStore(args.store, mode="r+").writer(f"featurize {descriptor.group}"),
            connect(cluster_options(args)) as client,
        ):
            print(describe(client))
            report = featurize(
                args.store,
                descriptor,
                client,
                collections=args.collection or None,
                retry_failed=args.retry_failed,
                progress=not args.quiet,
            )
        for coll, row, reason in report.failures:
            print(f"failed {coll} snapshot {row}: {reason}", file=sys.stderr)
        print(
            f"{report.group}: computed {report.computed} snapshots in {len(report.chunks)} chunks, "
            f"{len(report.failures)} failed, {report.skipped_chunks} chunks already done"
        )
        for error in report.errors:
            print(f"error: {error} (run featurize again to retry)", file=sys.stderr)
        return ERROR if report.errors else INCOMPLETE if report.failures else OK

    def done(self, args: argparse.Namespace) -> bool:
        """The descriptor variant is finished in every collection asked for (failed snapshots
        count as finished unless ``--retry-failed``)."""
        import numpy as np

        from phstore.store import FAILED, PENDING, FeatureStore

        group = self.descriptor(args).group
        store = FeatureStore(args.store, mode="r")
        unfinished = (PENDING, FAILED) if args.retry_failed else (PENDING,)
        for coll in args.collection or store.collections:
            if group not in store.descriptor_groups(coll):
                return False
            if store.n_snapshots(coll) and bool(np.isin(store.status(coll, group), unfinished).any()):
                return False
        return True


class FeaturizeSchNet(Featurize):
    """SchNet embeddings: the parameters are the trained model's (its key and architecture)."""

    def __init__(self) -> None:
        super().__init__(
            "schnet",
            "SchNet embeddings (last interaction block, per atom and atom-mean) of a model "
            "trained with `phstore train schnet`",
            None,
        )

    def descriptor_options(self) -> list[Option]:
        return [Option("model", "SchNet model directory written by `phstore train schnet`", required=True)]

    def descriptor(self, args: argparse.Namespace) -> Any:
        from phstore.descriptors import SchNet

        return SchNet.from_model(args.model)


_PH_VECTORS = "(no PH is recomputed; the ph_* options name the PH variant to read)"

COMMANDS = [
    Featurize(
        "ph",
        "persistence diagrams of the periodic alpha filtration and their normalised histogram (seed paper §2.2)",
        PHParams,
        (
            Option(
                "time_limit",
                "seconds one frame may take before it is recorded failed (default 120)",
                float,
                group="ph execution (not provenance)",
            ),
        ),
    ),
    Featurize("soap", "SOAP of every atom and its atom-mean (dscribe; seed paper §2.3)", SOAPParams),
    Featurize("pimage", f"persistence images of the stored PH diagrams {_PH_VECTORS}", PersistenceImageParams),
    Featurize(
        "phist",
        f"histograms of the stored PH diagrams with other bins, range or threshold {_PH_VECTORS}",
        DiagramHistogramParams,
    ),
    FeaturizeSchNet(),
]
