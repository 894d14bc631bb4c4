"""``phstore analyze maps|ridge-map|inverse``: descriptor-space maps, the Ridge coefficient map
and the inverse analysis (seed paper §3)."""

from __future__ import annotations

import argparse
import sys

from phstore.commands.base import (
    CLUSTER_OPTIONS,
    INCOMPLETE,
    OK,
    QUIET,
    SELECTION,
    STORE,
    Command,
    CommandError,
    cluster_options,
    select_rows,
    selects,
)
from phstore.commands.options import Option
from phstore.params import MAX_SECONDS, checked

_RIDGE_MODEL = Option("model", "Ridge model directory (on the PH histogram)", required=True)


class Maps(Command):
    words = ("analyze", "maps")
    help = "PCA and t-SNE of each descriptor, stored, drawn and scored"

    def options(self) -> list[Option]:
        return [
            STORE,
            Option("collection", "collection to map", required=True),
            Option("descriptors", "comma-separated (default ph,soap,schnet)", default="ph,soap,schnet"),
            Option("descriptor_key", "provenance key (prefix) of a variant to use (repeatable)", action="append"),
            Option(
                "perplexity",
                "t-SNE perplexities (default 10 30 50)",
                checked(int, low=1),
                default=[10, 30, 50],
                nargs="+",
            ),
            Option("seed", "seed of t-SNE (default 0)", int, default=0),
            Option(
                "dataset",
                "map this dataset's snapshots (a name or a pattern such as 'md/*'); needed when the collection "
                "holds energies of several",
            ),
            Option("out", "directory of the figures (default: here)", default="."),
            QUIET,
        ]

    def run(self, args: argparse.Namespace) -> int:
        from phstore.analysis.maps import analyze_maps

        reports = analyze_maps(
            args.store,
            args.collection,
            args.descriptors.split(","),
            args.out,
            tuple(args.descriptor_key or ()),
            tuple(args.perplexity),
            args.seed,
            args.dataset,
            progress=not args.quiet,
        )
        print(f"{'descriptor':10s} {'map':9s} {'n':>6s} {'trustworthiness':>15s} {'roughness':>9s}")
        for r in reports:
            for method, score in r.scores.items():
                print(
                    f"{r.descriptor:10s} {method:9s} {r.n:6d} "
                    f"{score['trustworthiness']:15.3f} {score['roughness']:9.3f}"
                )
        print("(roughness: mean |ΔE| to the 10 nearest neighbours in 2-D over the s.d. of E; 0 smooth, ~1.13 random)")
        print(
            f"coordinates in {', '.join(sorted({r.group for r in reports}))} "
            f"({'reused' if all(r.reused for r in reports) else 'computed'}); figures {args.out}/maps-*.png"
        )
        return OK


class RidgeMap(Command):
    words = ("analyze", "ridge-map")
    help = "draw a Ridge model's coefficients on the birth-death grid"

    def options(self) -> list[Option]:
        return [_RIDGE_MODEL, Option("out", "PNG path (default: MODEL/ridge-map.png)")]

    def run(self, args: argparse.Namespace) -> int:
        from phstore.analysis.ridge_map import ridge_map

        grid, path = ridge_map(args.model, args.out)
        print(f"coefficients {grid.values.min():.5f} … {grid.values.max():.5f} (eV/atom per s.d.) drawn to {path}")
        return OK


class Inverse(Command):
    words = ("analyze", "inverse")
    help = "stable volumes of high/low-coefficient pairs: local structures, bonds, angles (exit 3 if pairs failed)"

    def options(self) -> list[Option]:
        return [
            _RIDGE_MODEL,
            STORE,
            Option("collection", "collection to analyse", required=True),
            Option(
                "high",
                "coefficient (eV/atom per s.d. of the bin, as ridge-map draws it) above which a cell is high-energy "
                "(default 0.003, the paper's; on another model's scale it may select most cells: see --high-cells)",
                float,
            ),
            Option("low", "coefficient below which a cell is low-energy (default -0.0045, the paper's)", float),
            Option(
                "high_cells",
                "instead of --high/--low: the N cells with the largest coefficients are high-energy (give "
                "--low-cells too); counts hold on any model's scale",
                checked(int, low=1),
                metavar="N",
            ),
            Option(
                "low_cells",
                "with --high-cells: the N cells with the smallest coefficients are low-energy",
                checked(int, low=1),
                metavar="N",
            ),
            *SELECTION,
            Option(
                "first",
                "analyse the first N snapshots of the selection (default 25; without a selection: the first N with PH)",
                checked(int, low=1),
                default=25,
            ),
            Option(
                "noise",
                "stable-volume noise bandwidth, Å², capped at half a pair's lifetime (default 0.3)",
                checked(float, positive=True),
                default=0.3,
            ),
            Option(
                "time_limit",
                "seconds per stable volume before it is recorded failed (default 60)",
                checked(float, positive=True, high=MAX_SECONDS),
                default=60.0,
            ),
            Option("out", "directory of the outputs (default: here)", default="."),
            QUIET,
            *CLUSTER_OPTIONS,
        ]

    def run(self, args: argparse.Namespace) -> int:
        from phstore.analysis.inverse import HIGH, LOW, inverse_analysis
        from phstore.analysis.ridge_map import coefficient_grid
        from phstore.cluster import connect
        from phstore.modeldir import load_model_dir

        rows = self.rows(args)
        high, low = self.thresholds(args)
        with connect(cluster_options(args)) as client:
            report = inverse_analysis(
                args.model,
                args.store,
                args.collection,
                client,
                rows,
                high,
                low,
                args.noise,
                args.time_limit,
                args.out,
                progress=not args.quiet,
                first=args.first,
            )
        for p in report.failed:
            print(f"failed: snapshot {p.row} pair ({p.birth:.4f}, {p.death:.4f}) Å²: {p.error}", file=sys.stderr)
        grid = coefficient_grid(load_model_dir(args.model, "ridge")).values
        print(
            f"cells: {int((grid > high).sum())} above --high {high:g}, {int((grid < low).sum())} below "
            f"--low {low:g}, of {grid.size} (coefficients {grid.min():.4g} … {grid.max():.4g}; "
            "`phstore analyze ridge-map` draws them)"
        )
        hist = report.histograms()
        for side in (HIGH, LOW):
            pairs = [p for p in report.pairs if p.side == side]
            peak = (
                f"bond-length peak {hist[f'length_peak_{side}']:.3f} Å, angle peak {hist[f'angle_peak_{side}']:.1f}°"
                if len(report.lengths[side])
                else "no bonds"
            )
            tag = 1 if side == HIGH else 2
            atoms = sum(int(((t == tag) | (t == 3)).sum()) for t in report.tags.values())
            print(
                f"{side:4s}: {len(pairs)} pairs ({sum(p.atoms is None for p in pairs)} failed), {atoms} atoms; {peak}"
            )
        print(f"stored in {args.collection}/{report.group}; wrote " + ", ".join(str(f) for f in report.files))
        return INCOMPLETE if report.failed else OK

    def thresholds(self, args: argparse.Namespace) -> tuple[float, float]:
        """``(high, low)``: --high and --low (default: the paper's), or the thresholds of the
        --high-cells and --low-cells extreme cells of the model."""
        from phstore.analysis.inverse import PAPER_HIGH, PAPER_LOW
        from phstore.analysis.ridge_map import coefficient_grid
        from phstore.modeldir import load_model_dir

        counts = (args.high_cells, args.low_cells)
        if counts == (None, None):
            return (PAPER_HIGH if args.high is None else args.high), (PAPER_LOW if args.low is None else args.low)
        if None in counts or (args.high, args.low) != (None, None):
            raise CommandError("give --high-cells and --low-cells together, without --high and --low")
        try:
            return coefficient_grid(load_model_dir(args.model, "ridge")).extreme_thresholds(*counts)
        except ValueError as exc:
            raise CommandError(f"--high-cells/--low-cells: {exc}") from None

    def rows(self, args: argparse.Namespace):
        """The selected snapshots (the first ``--first``), or None without a selection."""
        from phstore.store import FeatureStore

        if not selects(args):
            return None
        rows = select_rows(FeatureStore(args.store, mode="r"), args)[1][: args.first]
        if not len(rows):
            raise CommandError(f"the selection holds no snapshot of {args.collection}; see `phstore query`")
        return rows

    def done(self, args: argparse.Namespace) -> bool:
        from phstore.analysis.inverse import analysed

        rows = self.rows(args)
        return analysed(
            args.model, args.store, args.collection, rows, *self.thresholds(args), args.noise, args.out, args.first
        )


COMMANDS = [Maps(), RidgeMap(), Inverse()]
