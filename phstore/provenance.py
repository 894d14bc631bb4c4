"""Provenance keys: a descriptor's parameters plus the versions of the code that computes it.

The key names the store group a variant lives in (``<descriptor>-<key>``), so features computed
with other parameters or another library version land in another group instead of being mixed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any


@lru_cache(maxsize=None)
def _installed_version(name: str) -> str:
    """Read once per process (about 2 ms a lookup, and every featurize task names its group):
    the version of a package imported earlier stays the one running even if it is upgraded."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


def package_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``packages`` (``"missing"`` when not installed)."""
    return {name: _installed_version(name) for name in packages}


def params_dict(params: Any) -> dict[str, Any]:
    """A frozen parameter dataclass as a JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(params)))


def record_key(record: dict[str, Any]) -> str:
    """12 hex digits of SHA-256 over a record's descriptor name, parameters and versions (so a
    stored record can be checked against the key it claims: ``phstore verify``)."""
    blob = json.dumps({k: record[k] for k in ("descriptor", "params", "versions")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def provenance(descriptor: str, params: Any, packages: tuple[str, ...]) -> dict[str, Any]:
    """The record stored on a descriptor group: name, parameters, versions and their key."""
    record = {"descriptor": descriptor, "params": params_dict(params), "versions": package_versions(packages)}
    return {**record, "key": record_key(record)}
