"""Descriptor-space maps (seed paper Figs. 4 and 5): PCA and t-SNE of stored descriptors, their
2-D coordinates stored back beside the features, and numbers for how good and how smooth they are.

Inputs per descriptor: its summary variable, z-scored per feature where the descriptor says so
(PH: the normalised histograms, z-scored per bin, as are the PH vectors; SOAP and SchNet: the
atom-means as stored). t-SNE runs on the first 50 principal components (the usual practice, and
it keeps 16,384-bin histograms tractable). Each map is a store group ``map-<key>`` whose key
hashes the descriptor group's key and the map parameters, so maps of other features or settings
never mix and a finished map is reused, not recomputed.

Numbers per map:

* **trustworthiness** (scikit-learn, k = 10): how well 2-D neighbours were neighbours in the
  descriptor space (1 is perfect), on at most ``sample`` snapshots;
* **roughness**: the mean |ΔE| between each snapshot and its k = 10 nearest neighbours in 2-D,
  divided by the standard deviation of E (energy per atom). 0 is perfectly smooth, about 1.13
  is what a random layout gives; the paper's "PH maps are continuous, SOAP forms islands"
  becomes a comparison of these numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from phstore.descriptors import REGISTRY
from phstore.features import descriptor_group, read_features
from phstore.plots import plot_maps
from phstore.provenance import provenance
from phstore.store import DONE, FAILED, FRAMES, TARGET, FeatureStore, VariableSpec, label_mask, mixed_datasets


@dataclass(frozen=True)
class MapParams:
    """What a map is of and how it is made: the descriptor variant (its provenance key), the
    variable, t-SNE perplexities, principal components before t-SNE, the seed."""

    descriptor_key: str
    variable: str
    standardise: bool
    perplexities: tuple[int, ...] = (10, 30, 50)
    pca_components: int = 50
    seed: int = 0
    dataset: str = ""  # the datasets mapped (a name or a pattern); "" all


@dataclass
class MapReport:
    """One descriptor's maps: the store group and, per method, its numbers."""

    descriptor: str
    group: str
    n: int
    scores: dict[str, dict[str, float]]
    reused: bool


def methods(perplexities: Sequence[int]) -> list[str]:
    """Names of the maps (store variables): ``pca`` and ``tsne_p<perplexity>``."""
    return ["pca", *(f"tsne_p{p}" for p in perplexities)]


def embed(X: np.ndarray, params: MapParams, desc: str = "map", progress: bool = False) -> dict[str, np.ndarray]:
    """2-D coordinates of the rows of ``X`` (already standardised if ``params`` says so) by PCA
    and by t-SNE at each perplexity (a progress bar ``desc`` over the maps, if ``progress``)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from tqdm.auto import tqdm

    bar = tqdm(total=1 + len(params.perplexities), desc=desc, unit="map", disable=not progress)
    reduced = PCA(n_components=min(params.pca_components, *X.shape), random_state=params.seed).fit_transform(X)
    out = {"pca": reduced[:, :2]}
    bar.update()
    for p in params.perplexities:
        tsne = TSNE(n_components=2, perplexity=min(p, (len(X) - 1) / 3), init="pca", random_state=params.seed)
        out[f"tsne_p{p}"] = tsne.fit_transform(reduced)
        bar.update()
    bar.close()
    return out


def roughness(coords: np.ndarray, energy: np.ndarray, k: int = 10) -> float:
    """Mean |ΔE| to the ``k`` nearest 2-D neighbours over the standard deviation of E."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(coords) - 1)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords)
    return float(np.abs(energy[idx[:, 1:]] - energy[:, None]).mean() / energy.std())


def scores(X: np.ndarray, coords: np.ndarray, energy: np.ndarray, sample: int, seed: int) -> dict[str, float]:
    """Trustworthiness (on at most ``sample`` rows) and roughness of one map (over the snapshots
    with an energy; NaN when fewer than 3 have one)."""
    from sklearn.manifold import trustworthiness

    pick = np.random.default_rng(seed).permutation(len(X))[:sample]
    k = min(10, len(pick) // 2 - 1)
    labelled = np.isfinite(energy)
    return {
        "trustworthiness": float(trustworthiness(X[pick], coords[pick], n_neighbors=k)),
        "roughness": roughness(coords[labelled], energy[labelled]) if labelled.sum() > 2 else float("nan"),
    }


def descriptor_map(
    store: FeatureStore,
    collection: str,
    descriptor: str,
    keys: Sequence[str] = (),
    perplexities: tuple[int, ...] = (10, 30, 50),
    seed: int = 0,
    sample: int = 2000,
    dataset: str | None = None,
    progress: bool = False,
) -> MapReport:
    """Map one descriptor of ``collection`` (snapshots with finished features, of ``dataset``
    when given: a name or a pattern) and store the coordinates as ``map-<key>`` (reused when
    already there); return its numbers. Energies colour and score a map, so the snapshots mapped
    may hold energies of one dataset only (unlabelled ones are mapped, and not scored)."""
    source = descriptor_group(store, collection, descriptor, keys)
    prov_source = store.descriptor_groups(collection)[source]
    kind = REGISTRY[descriptor]  # a descriptor is mapped by its summary variable, z-scored if it says so
    params = MapParams(
        prov_source["key"], kind.summary, kind.standardised, tuple(perplexities), seed=seed, dataset=dataset or ""
    )
    prov = provenance("map", params, ("scikit-learn",))
    group = f"map-{prov['key']}"
    n = store.n_snapshots(collection)
    frames = store.read_rows(collection, FRAMES, slice(0, n), ["dataset", TARGET])
    rows = np.flatnonzero(store.status(collection, source) == DONE)
    if dataset is not None:
        rows = rows[label_mask(frames["dataset"][rows], dataset)]
    energy = frames[TARGET][rows]
    names = sorted(set(frames["dataset"][rows][np.isfinite(energy)].tolist()))
    if len(names) > 1:
        raise mixed_datasets(f"{collection} (the snapshots to map)", names, "map")
    if len(rows) < 5:
        raise ValueError(
            f"{collection} has {len(rows)} snapshots with finished {source} features"
            + (f" in dataset {dataset!r}" if dataset is not None else "")
            + "; a map needs at least 5"
        )
    X = read_features(store, [(collection, rows)], [(source, params.variable)])
    if params.standardise:
        X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    names = methods(params.perplexities)
    reused = group in store.descriptor_groups(collection) and bool(
        (store.status(collection, group)[rows] == DONE).all()
    )
    if reused:
        coords = {m: store.read_rows(collection, group, slice(0, n), [m])[m][rows] for m in names}
    else:
        coords = embed(X, params, f"map {descriptor} ({len(rows)} snapshots)", progress)
        with store.writer(f"analyze maps {group}"):
            store.ensure_descriptor(
                collection, group, prov, {m: VariableSpec(("xy",), (2,), "float64", np.nan) for m in names}
            )
            values: dict[str, Any] = {}
            for m in names:
                full = np.full((n, 2), np.nan)
                full[rows] = coords[m]
                values[m] = full
            done = np.zeros(n, dtype=bool)
            done[rows] = True
            error = np.where(done, "", f"no finished {source} features" + (f" in {dataset!r}" if dataset else ""))
            store.commit_rows(collection, group, slice(0, n), values, np.where(done, DONE, FAILED), error)
    return MapReport(
        descriptor, group, len(rows), {m: scores(X, coords[m], energy, sample, seed) for m in names}, reused
    )


def analyze_maps(
    store_path: str | Path,
    collection: str,
    descriptors: Sequence[str] = ("ph", "soap", "schnet"),
    out: str | Path = ".",
    keys: Sequence[str] = (),
    perplexities: tuple[int, ...] = (10, 30, 50),
    seed: int = 0,
    dataset: str | None = None,
    progress: bool = False,
) -> list[MapReport]:
    """Map each descriptor of ``collection`` (the snapshots of ``dataset``, when given), store the
    coordinates, and draw one PNG per method (``maps-pca.png``, ``maps-tsne_p30.png``, …) under
    ``out`` with one column per descriptor, read back from the store."""
    store = FeatureStore(store_path, mode="r+")
    with store.writer("analyze maps"):
        reports = [
            descriptor_map(store, collection, d, keys, perplexities, seed, dataset=dataset, progress=progress)
            for d in descriptors
        ]
    n = store.n_snapshots(collection)
    frames = store.read_rows(collection, FRAMES, slice(0, n), ["density", TARGET])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for method in methods(perplexities):
        panels, done = [], np.ones(n, dtype=bool)
        for r in reports:
            group = store.read_rows(collection, r.group, slice(0, n), [method, "status"])
            done &= group["status"] == DONE
            panels.append((r.descriptor, group[method]))
        plot_maps(
            [(name, xy[done]) for name, xy in panels],
            frames["density"][done],
            frames[TARGET][done],
            out / f"maps-{method}.png",
            f"{collection}{f' ({dataset})' if dataset else ''}: {method.replace('_p', ', perplexity ')}",
        )
    return reports
