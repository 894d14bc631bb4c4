"""``phstore generate`` and ``phstore ingest``: making snapshots and putting them in a store."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from phstore.commands.base import CLUSTER_OPTIONS, INCOMPLETE, OK, QUIET, Command, cluster_options
from phstore.commands.options import Option
from phstore.params import checked


class Generate(Command):
    words = ("generate",)
    help = "make melt-quench carbon data with LAMMPS + Tersoff (Zenodo layout)"

    def options(self) -> list[Option]:
        return [
            Option("out", "output directory", required=True),
            Option(
                "paper_scale",
                "the seed paper's counts (16,830 + 2,805 + 560 frames); default: a small demo set",
                action="flag",
            ),
            Option("densities", "densities, g/cm³", checked(float, positive=True), nargs="+"),
            Option("natoms", "atoms per cell (a cube number)", checked(int, low=1)),
            Option("runs", "independent melt-quench runs per density", checked(int, low=1)),
            Option("seed", "random seed of the velocities", int),
            Option(
                "large_natoms",
                "one extra run per density with this many atoms (e.g. 512: the transfer set)",
                checked(int, low=1),
            ),
            Option("workers", "parallel MD processes (default: cores)", checked(int, low=1)),
            QUIET,
        ]

    def config(self, args: argparse.Namespace) -> Any:
        """The :class:`~phstore.generate.GenerateConfig` the options describe."""
        from phstore.generate import GenerateConfig

        base = GenerateConfig.paper() if args.paper_scale else GenerateConfig.demo()
        overrides = {
            k: getattr(args, k) for k in ("natoms", "runs", "seed", "large_natoms") if getattr(args, k) is not None
        }
        if args.densities:
            overrides["densities"] = tuple(args.densities)
        return dataclasses.replace(base, **overrides)

    def run(self, args: argparse.Namespace) -> int:
        from phstore.generate import generate

        files = generate(Path(args.out), self.config(args), workers=args.workers, progress=not args.quiet)
        print(f"wrote {len(files)} files under {args.out}")
        return OK

    def done(self, args: argparse.Namespace) -> bool:
        from phstore.generate import output_files

        return all((Path(args.out) / f).is_file() for f in output_files(self.config(args)))


class Ingest(Command):
    words = ("ingest",)
    help = (
        "add snapshots from ASE-readable files or directories to a store, parsed on Dask workers "
        "(exit 3 if frames were rejected)"
    )

    def options(self) -> list[Option]:
        return [
            Option(
                "sources",
                "files or directories (extxyz, OUTCAR, vasprun.xml, LAMMPS dump, ASE db)",
                nargs="+",
                action="positional",
            ),
            Option("store", "store directory (created if missing)", required=True),
            Option(
                "chunk_size",
                "snapshots per chunk of a new store (default 32); an existing store keeps its own",
                checked(int, low=1),
            ),
            Option(
                "dataset",
                "name of the origin of these energies (one code and functional); default: each source "
                "file is its own dataset. Models train within one dataset",
            ),
            Option(
                "min_distance",
                "reject frames with two atoms closer than this (overlapping; Å, default 0.5; 0 keeps them)",
                checked(float, low=0),
            ),
            Option(
                "species",
                "elements of LAMMPS atom types, e.g. 1=C,2=H (for dumps without an element column)",
                str,
            ),
            QUIET,
            *CLUSTER_OPTIONS,
        ]

    def run(self, args: argparse.Namespace) -> int:
        from phstore.cluster import connect
        from phstore.ingest import MIN_DISTANCE, existing_sources, ingest, parse_species

        species = parse_species(args.species) if args.species else None
        existing_sources(args.sources)  # nothing to read: say so before a cluster starts
        with connect(cluster_options(args)) as client:  # files are parsed on the workers
            report = ingest(
                args.store,
                args.sources,
                chunk_size=args.chunk_size,
                progress=not args.quiet,
                dataset=args.dataset,
                min_distance=MIN_DISTANCE if args.min_distance is None else args.min_distance,
                species=species,
                client=client,
            )
        for path in report.missing:
            print(f"no such file or directory: {path} (skipped)", file=sys.stderr)
        for rej in report.rejected:
            print(f"rejected {rej['source']} frame {rej['index']}: {rej['reason']}", file=sys.stderr)
        added = ", ".join(f"{c}: {n}" for c, n in sorted(report.added.items())) or "nothing"
        print(
            f"added {added}; {report.duplicates} duplicates skipped; {len(report.rejected)} frames rejected; "
            f"{report.known} files ingested before skipped"
            + (f"; {report.unlabelled} added without energy (featurized, not trained on)" if report.unlabelled else "")
        )
        return INCOMPLETE if report.rejected or report.missing else OK

    def done(self, args: argparse.Namespace) -> bool:
        """Every source exists and every file in it was read to its end before (by content)."""
        from phstore.ingest import find_sources, source_digest
        from phstore.store import FeatureStore

        if not all(Path(p).exists() for p in args.sources):
            return False
        known = FeatureStore(args.store, mode="r").sources
        return all(source_digest(path) in known for path, _, _ in find_sources(args.sources))


COMMANDS = [Generate(), Ingest()]
