"""``phstore`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from phstore.descriptors import (PH, REGISTRY, SOAP, Descriptor, DiagramHistogram, DiagramHistogramParams, PersistenceImage,
                                 PersistenceImageParams, PHParams, SchNet, SOAPParams)
from phstore.descriptors.ph import ENGINES
from phstore.store import StoreError
from phstore.training.neural import NeuralConfig
from phstore.training.ridge import RidgeConfig
from phstore.training.schnet import SchNetArchitecture, SchNetTraining
from phstore.training.split import Split


#: Vectors of stored PH diagrams, by their ``featurize --descriptor`` name: class and parameters.
VECTORS = {"pimage": (PersistenceImage, PersistenceImageParams), "phist": (DiagramHistogram, DiagramHistogramParams)}

#: Networks on stored features, by their ``train --model`` name.
NEURAL = {"cnn": NeuralConfig.cnn, "soap-mlp": NeuralConfig.soap_mlp, "ph-soap": NeuralConfig.ph_soap}


def _frames(text: str) -> slice | list[int]:
    """``10:50`` → slice(10, 50); ``3,7,9`` → [3, 7, 9]."""
    if ":" in text:
        lo, _, hi = text.partition(":")
        return slice(int(lo) if lo else None, int(hi) if hi else None)
    return [int(x) for x in text.split(",")]


def generate_config(args: argparse.Namespace):
    """The :class:`~phstore.generate.GenerateConfig` that ``generate``'s options describe."""
    from phstore.generate import GenerateConfig

    config = GenerateConfig.paper() if args.paper_scale else GenerateConfig.demo()
    overrides = {k: getattr(args, k) for k in ("natoms", "runs", "seed", "large_natoms") if getattr(args, k) is not None}
    if args.densities:
        overrides["densities"] = tuple(args.densities)
    return dataclasses.replace(config, **overrides)


def cmd_generate(args: argparse.Namespace) -> int:
    from phstore.generate import generate

    files = generate(Path(args.out), generate_config(args), workers=args.workers, progress=not args.quiet)
    print(f"wrote {len(files)} files under {args.out}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from phstore.ingest import ingest

    report = ingest(args.store, args.sources, chunk_size=args.chunk_size, progress=not args.quiet, dataset=args.dataset)
    for rej in report.rejected:
        print(f"rejected {rej['source']} frame {rej['index']}: {rej['reason']}", file=sys.stderr)
    added = ", ".join(f"{c}: {n}" for c, n in sorted(report.added.items())) or "nothing"
    print(f"added {added}; {report.duplicates} duplicates skipped; {len(report.rejected)} frames rejected")
    return 0


def make_descriptor(args: argparse.Namespace) -> Descriptor:
    """The descriptor that ``featurize``'s options describe."""
    ph = PHParams(engine=args.engine, min_persistence=args.min_persistence, truncate=args.truncate,
                  min_side=args.min_side)
    if args.descriptor == "ph":
        return PH(ph, time_limit=args.time_limit)
    if args.descriptor in VECTORS:
        kind, params = VECTORS[args.descriptor]
        given = {"degree": args.degree, "bins": args.bins, "sigma": args.image_sigma, "birth_range": args.birth_range,
                 "persistence_range": args.persistence_range, "range": args.hist_range}
        fields = {f.name for f in dataclasses.fields(params)}
        try:
            return kind(params(ph=ph, **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()
                                         if v is not None and k in fields}))
        except ValueError as exc:
            raise SystemExit(f"--descriptor {args.descriptor}: {exc}") from None
    if args.descriptor == "soap":
        return SOAP(SOAPParams(species=tuple(args.species), r_cut=args.r_cut, n_max=args.n_max,
                               l_max=args.l_max, sigma=args.sigma, rbf=args.rbf))
    if not args.model:
        raise SystemExit("--descriptor schnet needs --model DIR; train one with `phstore train --model schnet`")
    from phstore.training.modeldir import ModelDirError

    try:
        return SchNet.from_model(args.model)
    except ModelDirError as exc:
        raise SystemExit(f"--model: {exc}") from None


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that runs work on Dask workers."""
    from phstore.cluster import KINDS

    g = parser.add_argument_group("where the work runs (each falls back to Dask config phstore.cluster.*; see deploy/)")
    g.add_argument("--cluster", choices=KINDS, help="local: a LocalCluster on this machine (default); "
                   "slurm, pbs, sge, lsf: workers submitted as batch jobs through dask-jobqueue")
    g.add_argument("--profile", help="cluster profile: a Dask config YAML (e.g. deploy/slurm.yaml) with the "
                   "jobqueue.<kind> keys (cores, memory, walltime, account, queue, job-script-prologue, ...)")
    g.add_argument("--scheduler", help="address or scheduler-file of a running Dask scheduler (wins over --cluster)")
    g.add_argument("--workers", type=int, help="local worker processes (default: cores)")
    g.add_argument("--jobs", type=int, help="batch jobs to submit (default 1)")
    g.add_argument("--min-jobs", type=int, help="adaptive scaling: fewest batch jobs")
    g.add_argument("--max-jobs", type=int, help="adaptive scaling: most batch jobs (turns adaptive scaling on)")
    g.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None,
                   help="TLS with certificates made for this run (default: on for batch systems, off locally)")


def cluster_options(args: argparse.Namespace):
    """The :class:`~phstore.cluster.ClusterOptions` that :func:`add_cluster_options`' options describe."""
    from phstore.cluster import ClusterOptions

    return ClusterOptions(kind=args.cluster, scheduler=args.scheduler, profile=args.profile, workers=args.workers,
                          jobs=args.jobs, min_jobs=args.min_jobs, max_jobs=args.max_jobs, tls=args.tls)


def cmd_featurize(args: argparse.Namespace) -> int:
    from phstore.cluster import ClusterError, connect, describe
    from phstore.featurize import featurize
    from phstore.store import FeatureStore, StoreLocked

    descriptor = make_descriptor(args)
    try:  # the store's writer lock first: a second run stops before it starts a cluster
        with FeatureStore(args.store, mode="r+").writer(f"featurize {descriptor.group}"), \
                connect(cluster_options(args)) as client:
            print(describe(client))
            report = featurize(
                args.store, descriptor, client, collections=args.collection or None,
                retry_failed=args.retry_failed, progress=not args.quiet,
            )
    except (ClusterError, StoreLocked, ValueError) as exc:  # ValueError: inputs missing (PH vectors before PH)
        raise SystemExit(str(exc)) from None
    for coll, row, reason in report.failures:
        print(f"failed {coll} snapshot {row}: {reason}", file=sys.stderr)
    print(
        f"{report.group}: computed {report.computed} snapshots in {len(report.chunks)} chunks, "
        f"{len(report.failures)} failed, {report.skipped_chunks} chunks already done"
    )
    for error in report.errors:
        print(f"error: {error} (run featurize again to retry)", file=sys.stderr)
    return 1 if report.errors else 0


def _errors(m: dict) -> str:
    """One line of regression metrics (:func:`phstore.training.metrics.regression_metrics`)."""
    return f"RMSE {m['rmse_mev']:.1f} meV/atom, MAE {m['mae_mev']:.1f} meV/atom, R² {m['r2']:.3f} ({m['n']} snapshots)"


def train_collections(args: argparse.Namespace) -> list[str]:
    """The collections ``train``'s options name (``all``: every one; none: the store's only one)."""
    from phstore.store import open_store

    if args.collection not in (None, ["all"]):
        return args.collection
    stored = open_store(args.store).collections
    if len(stored) != 1 and not args.collection:
        raise SystemExit(f"the store holds collections {stored}; choose one or more with --collection (or all)")
    return stored


def train_output(args: argparse.Namespace) -> Path:
    """``train``'s model directory: ``--out``, or STORE-models/COLLECTIONS-MODEL-sSEED."""
    if args.out:
        return Path(args.out)
    name = "all" if args.collection == ["all"] else "+".join(train_collections(args))
    return _models_root(args.store) / f"{name}-{args.model}-s{args.seed}"


def cmd_train(args: argparse.Namespace) -> int:
    from phstore.training.neural import train_neural
    from phstore.training.ridge import train_ridge
    from phstore.training.schnet import train_schnet

    collections = train_collections(args)
    out = train_output(args)
    split = Split(args.split, args.test_fraction, args.seed)
    overrides = {k: getattr(args, k) for k in ("epochs", "lr", "batch_size") if getattr(args, k) is not None}
    ph = (args.ph_features, REGISTRY[args.ph_features].summary)
    if args.model in ("ridge", "cnn", "ph-soap"):  # the models that take PH
        overrides["features"] = (ph, ("soap", "mean")) if args.model == "ph-soap" else (ph,)
    try:
        if args.model == "ridge":
            model = train_ridge(args.store, collections, out, RidgeConfig(alpha=args.alpha, features=overrides["features"]),
                                split, args.dataset, tuple(args.descriptor_key))
        elif args.model in NEURAL:
            model = train_neural(args.store, collections, out, NEURAL[args.model](**overrides), split, args.dataset,
                                 tuple(args.descriptor_key), progress=not args.quiet)
        else:
            training = dataclasses.replace(SchNetTraining(), **overrides)
            arch = SchNetArchitecture(n_interactions=args.interactions)
            model = train_schnet(args.store, collections, out, arch, training, split, args.dataset, progress=not args.quiet)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    for part in ("train", "test"):
        print(f"{part:5s} {_errors(model.metrics[part])}")
    print(f"model {model.key} written to {model.path}")
    return 0


def _models_root(store: str) -> Path:
    """Where ``train`` puts model directories by default: ``STORE-models`` beside the store."""
    return Path(f"{store.rstrip('/')}-models")


def cmd_predict(args: argparse.Namespace) -> int:
    from phstore.training.modeldir import ModelDirError
    from phstore.training.predict import predict

    try:
        report = predict(args.model, args.store, args.collection)
    except (ModelDirError, ValueError, KeyError) as exc:
        raise SystemExit(str(exc)) from None
    print(f"{report.group}: predicted {report.predicted} snapshots of {args.collection}, {report.failed} without features")
    m = report.metrics
    if m is None:
        print("no snapshot of the model's dataset in this collection: energies not comparable, no errors computed")
    else:
        print(_errors(m))
        print(f"parity plot: {report.plot}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from phstore.training.modeldir import find_models

    root = Path(args.models) if args.models else _models_root(args.store)
    models = find_models(root, args.store)
    if not models:
        raise SystemExit(f"no models of {args.store} under {root}; train one with `phstore train` (or pass --models DIR)")
    header = f"{'model':28s} {'kind':9s} {'collections':14s} {'split':10s} {'n train/test':>12s} " \
             f"{'train RMSE':>10s} {'test RMSE':>9s} {'test MAE':>8s} {'test R²':>7s}"
    print(header + "\n" + "-" * len(header))
    for m in sorted(models, key=lambda m: m.metrics["test"]["rmse_mev"]):
        tr, te = m.metrics["train"], m.metrics["test"]
        name = str(m.path.relative_to(root)) if m.path.is_relative_to(root) else str(m.path)
        print(f"{name[:28]:28s} {m.kind:9s} {'+'.join(m.provenance['collections'])[:14]:14s} {m.config['split']['kind']:10s} "
              f"{tr['n']:>5d}/{te['n']:<6d} {tr['rmse_mev']:10.1f} {te['rmse_mev']:9.1f} {te['mae_mev']:8.1f} {te['r2']:7.3f}")
    print("(RMSE and MAE in meV/atom)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from phstore.store import open_store

    info = open_store(args.store).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"store {info['path']} (chunk size {info['chunk_size']}, {info['rejected']} frames rejected at ingest)")
    for coll, entry in info["collections"].items():
        dens = entry["densities"]
        shown = dens if len(dens) <= 8 else f"{len(dens)} values in [{dens[0]}, {dens[-1]}]" if dens else "none"
        print(f"  {coll}: {entry['n_snapshots']} snapshots, {entry['natoms']} atoms, "
              f"{entry['trajectories']} trajectories, densities (g/cm³) {shown}")
        for group, d in entry["descriptors"].items():
            print(f"    {group}: done {d['done']}, failed {d['failed']}, pending {d['pending']}; "
                  f"params {json.dumps(d['params'])}; versions {json.dumps(d['versions'])}")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from phstore.store import open_store

    store = open_store(args.store)
    collection, rows = store.select(args.collection, density=args.density, trajectory=args.trajectory,
                                    frames=_frames(args.frames) if args.frames else None)
    ds = store.dataset(collection).isel(snapshot=rows)
    n = ds.sizes["snapshot"]
    print(f"{n} snapshots selected")
    if n:
        e = ds["energy_per_atom"].values
        print(f"  densities (g/cm³) {sorted({round(float(d), 4) for d in ds['density'].values})}")
        print(f"  trajectories {sorted(set(ds['trajectory'].values.tolist()))}")
        print(f"  energy per atom {e.min():.4f} … {e.max():.4f} eV/atom (mean {e.mean():.4f})")
        print(f"  variables: {', '.join(sorted(ds.data_vars))}")
    if args.plot:
        from phstore.plots import plot_mean_ph_histogram

        try:
            used = plot_mean_ph_histogram(store, ds, args.plot)
        except ValueError as exc:
            raise SystemExit(f"--plot: {exc}") from None
        print(f"plotted the mean histogram of {used} snapshots to {args.plot}")
    if args.plot_diagram and n:
        from phstore.plots import plot_diagram

        try:
            pairs = {d: store.diagram(collection, int(rows[0]), d, args.descriptor_key) for d in (0, 1, 2)}
        except ValueError as exc:
            raise SystemExit(f"--plot-diagram: {exc}") from None
        plot_diagram(pairs, args.plot_diagram, f"{collection} snapshot {rows[0]} (frame {ds['frame'].values[0]} of "
                     f"{ds['trajectory'].values[0]})")
        print(f"plotted the diagrams of {collection} snapshot {rows[0]} to {args.plot_diagram}")
    if args.export:
        out = Path(args.export)
        loaded = ds.load()
        if out.suffix == ".nc":
            loaded.to_netcdf(out, engine="h5netcdf")
        elif out.suffix == ".npz":
            np.savez_compressed(out, **{k: np.asarray(v.values) for k, v in loaded.variables.items()})
        else:
            raise SystemExit(f"--export takes a .npz or .nc path, not {out}")
        print(f"exported to {out}")
    return 0


def cmd_analyze_maps(args: argparse.Namespace) -> int:
    from phstore.analysis.maps import analyze_maps

    try:
        reports = analyze_maps(args.store, args.collection, args.descriptors.split(","), args.out,
                               tuple(args.descriptor_key), tuple(args.perplexity), args.seed)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    print(f"{'descriptor':10s} {'map':9s} {'n':>6s} {'trustworthiness':>15s} {'roughness':>9s}")
    for r in reports:
        for method, score in r.scores.items():
            print(f"{r.descriptor:10s} {method:9s} {r.n:6d} {score['trustworthiness']:15.3f} {score['roughness']:9.3f}")
    print("(roughness: mean |ΔE| to the 10 nearest neighbours in 2-D over the s.d. of E; 0 smooth, ~1.13 random)")
    print(f"coordinates in {', '.join(sorted({r.group for r in reports}))} "
          f"({'reused' if all(r.reused for r in reports) else 'computed'}); figures {args.out}/maps-*.png")
    return 0


def cmd_analyze_ridge_map(args: argparse.Namespace) -> int:
    from phstore.analysis.ridge_map import ridge_map
    from phstore.training.modeldir import ModelDirError

    try:
        grid, path = ridge_map(args.model, args.out)
    except ModelDirError as exc:
        raise SystemExit(str(exc)) from None
    print(f"coefficients {grid.values.min():.5f} … {grid.values.max():.5f} (eV/atom per s.d.) drawn to {path}")
    return 0


def cmd_analyze_inverse(args: argparse.Namespace) -> int:
    from phstore.analysis.inverse import HIGH, LOW, inverse_analysis
    from phstore.cluster import ClusterError, connect
    from phstore.store import StoreLocked
    from phstore.training.modeldir import ModelDirError

    rows = None
    if args.frames:
        picked = _frames(args.frames)
        rows = list(range(picked.start or 0, picked.stop)) if isinstance(picked, slice) else picked
    try:
        with connect(cluster_options(args)) as client:
            report = inverse_analysis(args.model, args.store, args.collection, client, rows, args.high, args.low,
                                      args.noise, args.time_limit, args.out, progress=not args.quiet)
    except (ModelDirError, ValueError, ClusterError, StoreLocked) as exc:
        raise SystemExit(str(exc)) from None
    for p in report.failed:
        print(f"failed: snapshot {p.row} pair ({p.birth:.4f}, {p.death:.4f}) Å²: {p.error}", file=sys.stderr)
    hist = report.histograms()
    for side in (HIGH, LOW):
        pairs = [p for p in report.pairs if p.side == side]
        peak = (f"bond-length peak {hist[f'length_peak_{side}']:.3f} Å, angle peak {hist[f'angle_peak_{side}']:.1f}°"
                if len(report.lengths[side]) else "no bonds")
        print(f"{side:4s}: {len(pairs)} pairs ({sum(p.atoms is None for p in pairs)} failed), "
              f"{sum(int(((t == (1 if side == HIGH else 2)) | (t == 3)).sum()) for t in report.tags.values())} atoms; {peak}")
    print(f"stored in {args.collection}/{report.group}; wrote " + ", ".join(str(f) for f in report.files))
    return 0


def cmd_cluster_worker_env(args: argparse.Namespace) -> int:
    from phstore.cluster import worker_exports

    print("\n".join(worker_exports()))
    return 0


def cmd_cluster_job_script(args: argparse.Namespace) -> int:
    from phstore.cluster import ClusterError, job_script

    try:
        print(job_script(cluster_options(args)))
    except ClusterError as exc:
        raise SystemExit(str(exc)) from None
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from phstore.verify import verify_store

    report = verify_store(args.store, progress=not args.quiet)
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    verdict = "consistent" if report.ok else f"{len(report.problems)} problems"
    print(f"{args.store}: {verdict} ({report.snapshots} snapshots, {report.groups} groups, {report.chunks} chunks read)")
    return 0 if report.ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    from phstore.pipeline import run_pipeline

    overrides = dict(item.partition("=")[::2] for item in args.set)
    try:
        return run_pipeline(args.pipeline, build_parser(), overrides, dry_run=args.dry_run)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{args.pipeline}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phstore",
        description="Feature store of persistent-homology descriptors for amorphous materials "
        "(generate → ingest → featurize on Dask → query).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="make melt-quench carbon data with LAMMPS + Tersoff (Zenodo layout)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--paper-scale", action="store_true", help="the seed paper's counts (16,830 + 2,805 + 560 frames)")
    p.add_argument("--densities", type=float, nargs="+", help="densities, g/cm³")
    p.add_argument("--natoms", type=int, help="atoms per cell (a cube number)")
    p.add_argument("--runs", type=int, help="independent melt-quench runs per density")
    p.add_argument("--seed", type=int, help="random seed of the velocities")
    p.add_argument("--large-natoms", type=int, help="one extra run per density with this many atoms (e.g. 512: the transfer set)")
    p.add_argument("--workers", type=int, help="parallel MD processes (default: cores)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("ingest", help="add snapshots from ASE-readable files or directories to a store")
    p.add_argument("sources", nargs="+", help="files or directories (extxyz, OUTCAR, vasprun.xml, LAMMPS dump, ASE db)")
    p.add_argument("--store", required=True, help="store directory (created if missing)")
    p.add_argument("--chunk-size", type=int, help="snapshots per chunk of a new store (default 32); an existing store keeps its own")
    p.add_argument("--dataset", help="name of the origin of these energies (one code and functional); "
                   "default: each SOURCE is its own dataset. Models train within one dataset")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("featurize", help="compute a descriptor for every pending snapshot on Dask workers")
    p.add_argument("--store", required=True)
    p.add_argument("--descriptor", choices=sorted(REGISTRY), default="ph", help="descriptor to compute (default: ph)")
    p.add_argument("--collection", action="append", help="only this collection (repeatable)")
    add_cluster_options(p)
    p.add_argument("--retry-failed", action="store_true", help="compute failed snapshots again")
    p.add_argument("--quiet", action="store_true")
    ph = p.add_argument_group("ph options")
    ph.add_argument("--engine", choices=ENGINES, default=PHParams.engine,
                    help="native: phstore's periodic alpha engine, any cell as it is; homcloud: HomCloud in a child "
                    "process, orthorhombic cells replicated into near-cubes (default %(default)s)")
    ph.add_argument("--time-limit", type=float, default=120.0, help="seconds per frame before it is failed (default %(default)s)")
    ph.add_argument("--min-persistence", type=float, default=PHParams.min_persistence,
                    help="leave pairs with death - birth at or below this out of the histogram, Å² (default %(default)s)")
    ph.add_argument("--no-truncate", dest="truncate", action="store_false",
                    help="native engine: compute the whole filtration, not only up to the histogram's upper bound "
                    "(pairs that die above it get their death instead of inf; slower at low density)")
    ph.add_argument("--min-side", type=float, default=PHParams.min_side,
                    help="replicate cells until every cell height is ≥ this, Å (default %(default)s: the cell as it is)")
    vec = p.add_argument_group("pimage and phist options: vectors of the stored PH diagrams (no PH is recomputed; "
                               "the ph options above name the PH variant to read)")
    vec.add_argument("--degree", type=int, help=f"homology degree (default {PersistenceImageParams.degree})")
    vec.add_argument("--bins", type=int, help=f"pixels or bins per axis (default: pimage {PersistenceImageParams.bins}, "
                     f"phist {DiagramHistogramParams.bins})")
    vec.add_argument("--image-sigma", type=float, help=f"pimage: Gaussian width, Å² (default {PersistenceImageParams.sigma})")
    vec.add_argument("--birth-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                     help=f"pimage: births, Å² (default {PersistenceImageParams.birth_range})")
    vec.add_argument("--persistence-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                     help=f"pimage: persistences, Å² (default {PersistenceImageParams.persistence_range})")
    vec.add_argument("--hist-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                     help=f"phist: births and deaths, Å² (default {DiagramHistogramParams.range})")
    soap = p.add_argument_group("soap options (defaults: the seed paper's)")
    soap.add_argument("--species", nargs="+", default=list(SOAPParams.species), help="chemical symbols (default %(default)s)")
    soap.add_argument("--r-cut", type=float, default=SOAPParams.r_cut, help="cutoff radius, Å (default %(default)s)")
    soap.add_argument("--n-max", type=int, default=SOAPParams.n_max, help="radial basis functions (default %(default)s)")
    soap.add_argument("--l-max", type=int, default=SOAPParams.l_max, help="maximum spherical-harmonic degree (default %(default)s)")
    soap.add_argument("--sigma", type=float, default=SOAPParams.sigma, help="Gaussian width, Å (default %(default)s)")
    soap.add_argument("--rbf", choices=["gto", "polynomial"], default=SOAPParams.rbf, help="radial basis (default %(default)s)")
    schnet = p.add_argument_group("schnet options")
    schnet.add_argument("--model", help="SchNet model directory written by `phstore train --model schnet`")
    p.set_defaults(func=cmd_featurize)

    p = sub.add_parser("train", help="train a model on a collection's stored data and write a model directory")
    p.add_argument("--store", required=True)
    p.add_argument("--collection", action="append",
                   help="collection to train on (repeatable: several cell sizes of one dataset train together; "
                   "'all': every collection; required when the store holds several)")
    p.add_argument("--model", choices=["ridge", *NEURAL, "schnet"], required=True,
                   help="ridge: Ridge on the PH histograms (alpha 200); cnn: the paper's CNN on them; "
                   "soap-mlp: MLP on atom-mean SOAP; ph-soap: the same MLP on PH histogram + SOAP; "
                   "schnet: SchNet on positions")
    p.add_argument("--out", help="model directory (default: STORE-models/COLLECTION-MODEL-sSEED)")
    p.add_argument("--dataset", help="train on this dataset's snapshots (required when the collection holds several)")
    p.add_argument("--split", choices=["random", "trajectory"], default="random", help="random 80/20 (the paper's) or whole trajectories held out")
    p.add_argument("--test-fraction", type=float, default=Split.test_fraction)
    p.add_argument("--seed", type=int, default=Split.seed, help="seed of the split (and of the weights)")
    ridge = p.add_argument_group("ridge options")
    ridge.add_argument("--alpha", type=float, default=RidgeConfig.alpha, help="regularisation (default %(default)s)")
    p.add_argument("--ph-features", choices=["ph", *VECTORS], default="ph",
                   help="what ridge, cnn and ph-soap take of PH: ph, the PH descriptor's histogram; pimage, the "
                   "persistence images; phist, a histogram of the stored diagrams (featurize them first; default %(default)s)")
    ridge.add_argument("--descriptor-key", action="append", default=[],
                       help="provenance key (prefix) of the descriptor variant to use, when the store holds several (repeatable)")
    nets = p.add_argument_group("cnn, soap-mlp and schnet options (defaults: each model's own, the paper's where it gives them)")
    nets.add_argument("--epochs", type=int, help="cnn 1600, soap-mlp 2000, schnet 100")
    nets.add_argument("--batch-size", type=int, help="cnn and soap-mlp 32, schnet 16")
    nets.add_argument("--lr", type=float, help="initial learning rate: cnn 0.0015, soap-mlp 0.001, schnet 0.0005")
    nets.add_argument("--interactions", type=int, default=SchNetArchitecture.n_interactions, help="SchNet interaction blocks (default %(default)s)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict a collection's energies with a trained model and store them")
    p.add_argument("--model", required=True, help="model directory written by `phstore train`")
    p.add_argument("--store", required=True)
    p.add_argument("--collection", required=True, help="e.g. C512 for a model trained on C216 (transfer)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("compare", help="one table of every trained model's train and test errors (meV/atom)")
    p.add_argument("--store", required=True)
    p.add_argument("--models", help="directory searched for model directories (default: STORE-models)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("analyze", help="descriptor-space maps, the Ridge coefficient map, inverse analysis")
    analyses = p.add_subparsers(dest="analysis", required=True)
    a = analyses.add_parser("maps", help="PCA and t-SNE of each descriptor, stored, drawn and scored")
    a.add_argument("--store", required=True)
    a.add_argument("--collection", required=True)
    a.add_argument("--descriptors", default="ph,soap,schnet", help="comma-separated (default %(default)s)")
    a.add_argument("--descriptor-key", action="append", default=[], help="provenance key (prefix) of a variant to use (repeatable)")
    a.add_argument("--perplexity", type=int, nargs="+", default=[10, 30, 50], help="t-SNE perplexities (default %(default)s)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", default=".", help="directory of the figures (default: here)")
    a.set_defaults(func=cmd_analyze_maps)
    a = analyses.add_parser("ridge-map", help="draw a Ridge model's coefficients on the birth-death grid")
    a.add_argument("--model", required=True, help="Ridge model directory (on the PH histogram)")
    a.add_argument("--out", help="PNG path (default: MODEL/ridge-map.png)")
    a.set_defaults(func=cmd_analyze_ridge_map)
    a = analyses.add_parser("inverse", help="stable volumes of high/low-coefficient pairs: local structures, bonds, angles")
    a.add_argument("--model", required=True, help="Ridge model directory (on the PH histogram)")
    a.add_argument("--store", required=True)
    a.add_argument("--collection", required=True)
    a.add_argument("--high", type=float, default=0.003, help="coefficient above which a cell is high-energy (default %(default)s)")
    a.add_argument("--low", type=float, default=-0.0045, help="coefficient below which a cell is low-energy (default %(default)s)")
    a.add_argument("--frames", help="snapshots START:STOP or 1,2,3 (default: the first 25 with PH)")
    a.add_argument("--noise", type=float, default=0.3, help="stable-volume noise bandwidth, Å², capped at half a pair's lifetime (default %(default)s)")
    a.add_argument("--time-limit", type=float, default=60.0, help="seconds per stable volume before it is recorded failed")
    a.add_argument("--out", default=".", help="directory of the outputs (default: here)")
    add_cluster_options(a)
    a.add_argument("--quiet", action="store_true")
    a.set_defaults(func=cmd_analyze_inverse)

    p = sub.add_parser("run", help="run a pipeline file (pipelines/*.yaml): its stages in order, those already done skipped",
                       description="Run the stages of a pipeline file in order; a stage whose result the store already "
                       "holds is skipped (see phstore/pipeline.py for the format).")
    p.add_argument("pipeline", help="pipeline file, e.g. pipelines/quick.yaml")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override one of the file's vars (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print each stage's command and whether it is done; run nothing")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("cluster", help="inspect the batch-system set-up (deploy/)")
    clusters = p.add_subparsers(dest="cluster_command", required=True)
    c = clusters.add_parser("job-script", help="print the job script each worker job would be submitted with")
    add_cluster_options(c)
    c.set_defaults(func=cmd_cluster_job_script)
    c = clusters.add_parser("worker-env", help="print what phstore starts workers with (phstore.cluster.worker-env: glibc "
                            "malloc settings; worker-config: Dask settings) as shell exports, for workers you start yourself")
    c.set_defaults(func=cmd_cluster_worker_env)

    p = sub.add_parser("verify", help="read the whole store back and check it; exit 1 on any problem")
    p.add_argument("--store", required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("info", help="list collections, descriptors (with parameters), counts and failures")
    p.add_argument("--store", required=True)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("query", help="select snapshots by density, trajectory and frame; summarise or export")
    p.add_argument("--store", required=True)
    p.add_argument("--collection", help="collection (required when the store holds several)")
    p.add_argument("--density", type=float, nargs="+", help="density, g/cm³ (within 0.005)")
    p.add_argument("--trajectory", nargs="+")
    p.add_argument("--frames", help="frame range START:STOP or list 1,2,3")
    p.add_argument("--export", help="write the selection to a .npz or .nc file")
    p.add_argument("--plot", help="draw the mean PH histogram of the selection to this PNG")
    p.add_argument("--plot-diagram", help="draw the persistence diagrams (degrees 0-2) of the selection's first "
                   "snapshot to this PNG")
    p.add_argument("--descriptor-key", default="", help="provenance key (prefix) of the PH variant to draw, when there are several")
    p.set_defaults(func=cmd_query)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``phstore`` command; a store that is missing, locked or of another chunk size is
    one line on stderr and exit status 1."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StoreError as exc:
        print(f"phstore: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
