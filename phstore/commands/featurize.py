"""``phstore featurize <descriptor>``: a descriptor of every pending snapshot, on Dask workers.

Each descriptor whose parameters are a dataclass (:mod:`phstore.descriptors.params`) offers
every field as an option; SchNet's come from the trained model it names.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from phstore.commands.base import CLUSTER_OPTIONS, ERROR, INCOMPLETE, OK, QUIET, STORE, Command, cluster_options
from phstore.commands.options import Option, options_of, params_from
from phstore.descriptors import KINDS, DescriptorKind


class Featurize(Command):
    """Featurize with one descriptor (:data:`phstore.descriptors.KINDS`): its parameters and
    execution settings are the options."""

    def __init__(self, kind: DescriptorKind) -> None:
        self.words, self.help, self.kind = ("featurize", kind.name), kind.help, kind

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
        options = options_of(self.kind.params, group=f"{self.kind.name} parameters (enter the provenance key)")
        if self.kind.settings:
            options += options_of(self.kind.settings, group=f"{self.kind.name} execution (not provenance)")
        return options

    def descriptor(self, args: argparse.Namespace) -> Any:
        """The descriptor the options describe."""
        settings = dataclasses.asdict(params_from(self.kind.settings, args)) if self.kind.settings else {}
        return self.kind.descriptor_class()(params_from(self.kind.params, args), **settings)

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
        for note in report.notes:
            print(f"note: {note}", file=sys.stderr)
        for coll, row, reason, source, index in report.failed_frames(FeatureStore(args.store, mode="r")):
            print(f"failed {coll} snapshot {row} ({source} frame {index}): {reason}", file=sys.stderr)
        print(
            f"{report.group}: computed {report.computed} snapshots in {len(report.shards)} shards, "
            f"{len(report.failures)} failed, {report.skipped_shards} shards already done"
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

    def descriptor_options(self) -> list[Option]:
        return [Option("model", "SchNet model directory written by `phstore train schnet`", required=True)]

    def descriptor(self, args: argparse.Namespace) -> Any:
        from phstore.descriptors import SchNet

        return SchNet.from_model(args.model)


COMMANDS = [(Featurize if kind.params else FeaturizeSchNet)(kind) for kind in KINDS.values()]
