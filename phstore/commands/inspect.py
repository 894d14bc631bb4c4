"""``phstore info``, ``query``, ``verify``, ``repair`` and ``cluster``: looking at a store, mending
it, and where work runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from phstore.commands.base import (
    CLUSTER_OPTIONS,
    ERROR,
    OK,
    QUIET,
    SELECTION,
    STORE,
    Command,
    CommandError,
    cluster_options,
    select_rows,
)
from phstore.commands.options import Option
from phstore.params import checked


class Info(Command):
    words = ("info",)
    help = "list collections, descriptors (with parameters), counts and failures"

    def options(self) -> list[Option]:
        return [STORE, Option("json", "print the summary as JSON", action="flag")]

    def run(self, args: argparse.Namespace) -> int:
        from phstore.store import FeatureStore

        info = FeatureStore(args.store, mode="r").info()
        if args.json:
            print(json.dumps(info, indent=2))
            return OK
        reasons = ", ".join(f"{n} {kind}" for kind, n in info["rejected_reasons"].items())
        print(
            f"store {info['path']} (chunk size {info['chunk_size']}, {info['rejected']} frames rejected at ingest"
            + (f": {reasons}" if reasons else "")
            + ")"
        )
        for coll, entry in info["collections"].items():
            dens = entry["densities"]
            shown = dens if len(dens) <= 8 else f"{len(dens)} values in [{dens[0]}, {dens[-1]}]" if dens else "none"
            print(
                f"  {coll}: {entry['n_snapshots']} snapshots, {entry['natoms']} atoms, "
                f"{entry['trajectories']} trajectories, densities (g/cm³) {shown}"
            )
            for group, d in entry["descriptors"].items():
                print(
                    f"    {group}: done {d['done']}, failed {d['failed']}, pending {d['pending']}; "
                    f"params {json.dumps(d['params'])}; versions {json.dumps(d['versions'])}"
                )
        return OK


class Query(Command):
    words = ("query",)
    help = "select snapshots by density, trajectory, frame and labels; summarise, draw or export"

    def options(self) -> list[Option]:
        return [
            STORE,
            Option("collection", "collection (required when the store holds several)"),
            *SELECTION,
            Option("first", "keep the first N snapshots of the selection", checked(int, low=1)),
            Option(
                "export",
                "write the selection to a .npz or .nc file (every variable), or to .extxyz (the frames, "
                "energies and keys, as ingest reads them back)",
            ),
            Option(
                "variables",
                "variables of the selection to write with an .extxyz export (e.g. soap_mean soap_per_atom): "
                "per-atom ones as atom arrays, the others in the comment line",
                nargs="+",
            ),
            Option("plot", "draw the mean PH histogram of the selection to this PNG"),
            Option(
                "plot_diagram",
                "draw the persistence diagrams (degrees 0-2) of the selection's first snapshot to this PNG",
            ),
            Option(
                "descriptor_key",
                "provenance key (prefix) of the PH variant to draw, when there are several",
                default="",
            ),
        ]

    def run(self, args: argparse.Namespace) -> int:
        import numpy as np

        from phstore.plots import plot_diagram, plot_mean_ph_histogram
        from phstore.store import FeatureStore

        if args.export and Path(args.export).suffix not in (".nc", ".npz", ".xyz", ".extxyz"):
            raise CommandError(f"--export takes a .npz, .nc or .extxyz path, not {args.export}")
        if args.variables and Path(args.export or "").suffix not in (".xyz", ".extxyz"):
            raise CommandError("--variables goes with an .extxyz --export (.nc and .npz hold every variable)")
        store = FeatureStore(args.store, mode="r")
        collection, rows = select_rows(store, args)
        rows = rows[: args.first] if args.first is not None else rows
        ds = store.dataset(collection, rows)
        n = ds.sizes["snapshot"]
        print(f"{n} snapshots selected")
        if not n:
            there = np.unique(np.round(store.column(collection, "density"), 4)).tolist()
            trajectories = sorted(set(store.column(collection, "trajectory").tolist()))[:10]
            print(
                f"  {collection} holds {store.n_snapshots(collection)} snapshots at densities (g/cm³) {there} in "
                f"trajectories {trajectories}; widen --density-tol or "
                "give a range LOW:HIGH",
                file=sys.stderr,
            )
        if n:
            e = ds["energy_per_atom"].values
            print(f"  densities (g/cm³) {sorted({round(float(d), 4) for d in ds['density'].values})}")
            print(f"  trajectories {sorted(set(ds['trajectory'].values.tolist()))}")
            print(f"  datasets {sorted(set(ds['dataset'].values.tolist()))}")
            if np.isfinite(e).any():
                print(f"  energy per atom {np.nanmin(e):.4f} … {np.nanmax(e):.4f} eV/atom (mean {np.nanmean(e):.4f})")
            if not np.isfinite(e).all():
                print(f"  {int((~np.isfinite(e)).sum())} snapshots without energy (unlabelled)")
            print(f"  variables: {', '.join(sorted(ds.data_vars))}")
        if args.plot:
            used = plot_mean_ph_histogram(store, ds, args.plot)
            print(f"plotted the mean histogram of {used} snapshots to {args.plot}")
        if args.plot_diagram and n:
            pairs = {d: store.diagram(collection, int(rows[0]), d, args.descriptor_key) for d in (0, 1, 2)}
            plot_diagram(
                pairs,
                args.plot_diagram,
                f"{collection} snapshot {rows[0]} (frame {ds['frame'].values[0]} of {ds['trajectory'].values[0]})",
            )
            print(f"plotted the diagrams of {collection} snapshot {rows[0]} to {args.plot_diagram}")
        if args.export:
            out = Path(args.export)
            if out.suffix in (".xyz", ".extxyz"):
                from phstore.export import write_extxyz

                written = write_extxyz(store, collection, rows, out, args.variables or ())
                print(f"exported {written} frames to {out}")
                return OK
            loaded = ds.load()
            if out.suffix == ".nc":
                loaded.to_netcdf(out, engine="h5netcdf")
            else:
                np.savez_compressed(  # strings as unicode arrays: np.load needs no pickle
                    out,
                    **{
                        k: v.values.astype(str) if v.dtype == object else np.asarray(v.values)
                        for k, v in loaded.variables.items()
                    },
                )
            print(f"exported to {out}")
        return OK


class Verify(Command):
    words = ("verify",)
    help = (
        "read the whole store back on Dask workers and check it: exit 1 on damage (each named, frames "
        "with their source file and frame; `phstore repair` mends it), 0 when consistent (unfinished work noted)"
    )

    def options(self) -> list[Option]:
        return [STORE, QUIET, *CLUSTER_OPTIONS]

    def run(self, args: argparse.Namespace) -> int:
        from phstore.cluster import connect
        from phstore.verify import verify_store

        with connect(cluster_options(args)) as client:
            report = verify_store(args.store, client, progress=not args.quiet)
        for problem in report.problems:
            print(f"damage: {problem}", file=sys.stderr)
        for note in report.notes:
            print(f"unfinished: {note}", file=sys.stderr)
        if report.ok:
            verdict = "consistent" + (f", {len(report.notes)} groups unfinished" if report.notes else "")
        else:
            verdict = f"{len(report.problems)} kinds of damage (run `phstore repair --store {args.store}`)"
        print(
            f"{args.store}: {verdict} ({report.snapshots} snapshots, {report.groups} groups, "
            f"{report.chunks} chunks read)"
        )
        return OK if report.ok else ERROR


class Repair(Command):
    words = ("repair",)
    help = (
        "verify the store and mend it: damaged descriptor chunks become pending (the next featurize "
        "recomputes them), damaged frames are read again from their sources; exit 1 if anything is left unmended"
    )

    def options(self) -> list[Option]:
        return [STORE, QUIET, *CLUSTER_OPTIONS]

    def run(self, args: argparse.Namespace) -> int:
        from phstore.cluster import connect
        from phstore.repair import repair_store

        with connect(cluster_options(args)) as client:
            report = repair_store(args.store, client, progress=not args.quiet)
        for problem in report.found.problems:
            print(f"found: {problem}", file=sys.stderr)
        for coll, rows in report.restored.items():
            print(f"{coll}: {len(rows)} frames read again from their sources")
        for (coll, group), shards in report.reset.items():
            descriptor = group.partition("-")[0]
            print(
                f"{coll}/{group}: {len(shards)} shards pending again; run `phstore featurize {descriptor} "
                f"--store {args.store} ...` (with its parameters) to recompute them"
            )
        for line in report.unmended:
            print(f"not mended: {line}", file=sys.stderr)
        if not report.found.damage:
            print(f"{args.store}: nothing to repair")
        return OK if report.ok else ERROR


class JobScript(Command):
    words = ("cluster", "job-script")
    help = "print the job script each worker job would be submitted with"

    def options(self) -> list[Option]:
        return CLUSTER_OPTIONS

    def run(self, args: argparse.Namespace) -> int:
        from phstore.cluster import job_script

        print(job_script(cluster_options(args)))
        return OK


class WorkerEnv(Command):
    words = ("cluster", "worker-env")
    help = (
        "print what phstore starts workers with (phstore.cluster.worker-env: glibc malloc settings; "
        "worker-config: Dask settings) as shell exports, for workers you start yourself"
    )

    def run(self, args: argparse.Namespace) -> int:
        from phstore.cluster import worker_exports

        print("\n".join(worker_exports()))
        return OK


COMMANDS = [Info(), Query(), Verify(), Repair(), JobScript(), WorkerEnv()]
