"""Model directories: what training writes and what prediction and featurization read.

A model directory holds::

    model.json    kind, config (the model's parameters under ``params``, the split, what it
                  read), metrics, provenance (store, collections, dataset, versions) and the
                  SHA-256 of the weights
    weights.npz   the learned state: plain numpy arrays (a network's tensors as ``net.<name>``),
                  read with ``allow_pickle=False``, so loading runs no code and needs no torch
    split.npz     the snapshot indices of the train and test sets, per collection
                  (arrays ``train:<collection>`` and ``test:<collection>``)

The model's key (:attr:`ModelDir.key`) is a hash of its weights and config, so features made
from a model (e.g. SchNet embeddings) are tied to exactly one trained state.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from phstore.errors import PhstoreError

FORMAT = "phstore-model-2"
META, WEIGHTS, SPLIT = "model.json", "weights.npz", "split.npz"
NET = "net."  # prefix of a torch module's tensors in the state


class ModelDirError(PhstoreError, RuntimeError):
    """A model directory is missing, foreign, corrupt or of another kind."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelDir:
    """A loaded model directory (see the module docstring)."""

    path: Path
    kind: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    provenance: dict[str, Any]
    weights_sha256: str
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]

    @property
    def key(self) -> str:
        """12 hex digits of SHA-256 over the weights' hash, the kind and the config."""
        blob = json.dumps({"kind": self.kind, "config": self.config, "weights": self.weights_sha256}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def state(self) -> dict[str, np.ndarray]:
        """The learned arrays, checked against the recorded hash."""
        path = self.path / WEIGHTS
        if not path.is_file() or _sha256(path) != self.weights_sha256:
            raise ModelDirError(
                f"{path} is missing or does not match the SHA-256 in {self.path / META}: the file was changed "
                "or is corrupt; re-train the model"
            )
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return {k: arrays[k] for k in arrays.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ModelDirError(f"{path} is not a plain array file ({exc}); re-train the model") from None


def module_state(module: Any) -> dict[str, np.ndarray]:
    """A torch module's tensors as arrays named ``net.<name>`` (what :func:`load_module` reads)."""
    return {NET + k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def load_module(module: Any, state: dict[str, np.ndarray]) -> Any:
    """Load the ``net.<name>`` arrays of ``state`` into a torch module; return the module."""
    import torch

    module.load_state_dict({k[len(NET) :]: torch.from_numpy(v) for k, v in state.items() if k.startswith(NET)})
    return module


def save_model_dir(
    path: str | Path,
    kind: str,
    config: dict[str, Any],
    state: dict[str, np.ndarray],
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    metrics: dict[str, Any],
    provenance: dict[str, Any],
) -> ModelDir:
    """Write a model directory (weights first, ``model.json`` last: its presence marks it complete).
    ``train`` and ``test`` are snapshot indices per collection, ``state`` the learned arrays."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / META).unlink(missing_ok=True)
    np.savez(path / WEIGHTS, **{k: np.asarray(v) for k, v in state.items()})
    np.savez(
        path / SPLIT,
        **{
            f"{part}:{coll}": np.asarray(rows, dtype=np.int64)
            for part, split in (("train", train), ("test", test))
            for coll, rows in split.items()
        },
    )
    meta = {
        "format": FORMAT,
        "kind": kind,
        "config": config,
        "metrics": metrics,
        "provenance": provenance,
        "weights_sha256": _sha256(path / WEIGHTS),
    }
    (path / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return load_model_dir(path, kind)


def load_model_dir(path: str | Path, kind: str | None = None) -> ModelDir:
    """Read a model directory's metadata and split (weights load on :meth:`ModelDir.state`).

    Raises :class:`ModelDirError` with what to do when the directory is not a complete phstore
    model (of ``kind``, when given).
    """
    path = Path(path)
    meta_path = path / META
    if not meta_path.is_file():
        raise ModelDirError(f"{path} is not a phstore model directory (no {META}); train one with `phstore train`")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{meta_path} is corrupt: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ModelDirError(
            f"{meta_path} is not a {FORMAT} file"
            + (f" but {found}, written by an older phstore: train the model again" if found else "")
        )
    if kind is not None and meta["kind"] != kind:
        raise ModelDirError(f"{path} holds a {meta['kind']!r} model, not {kind!r}")
    try:
        with np.load(path / SPLIT, allow_pickle=False) as split:
            train, test = (
                {c: split[f"{part}:{c}"] for c in meta["provenance"]["collections"]} for part in ("train", "test")
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ModelDirError(f"{path / SPLIT} is missing or corrupt: {exc}") from None
    return ModelDir(
        path, meta["kind"], meta["config"], meta["metrics"], meta["provenance"], meta["weights_sha256"], train, test
    )


def find_models(root: str | Path, store: str | Path | None = None) -> list[ModelDir]:
    """Every complete model directory under ``root`` (trained on ``store``, when given), sorted
    by path. Directories that are not complete models are skipped."""
    wanted = str(Path(store).resolve()) if store is not None else None
    out = []
    for meta in sorted(Path(root).rglob(META)):
        try:
            model = load_model_dir(meta.parent)
        except ModelDirError:
            continue
        if wanted is None or model.provenance.get("store") == wanted:
            out.append(model)
    return out
