"""``phstore verify``: read a whole store back and check its invariants (ARCHITECTURE.md).

Checked: every chunk of every array decodes; committed frames have unique content hashes and
finite energies; each group's provenance record hashes to the key in its name; every snapshot of
a descriptor or prediction group is done or recorded failed (with a reason), never pending; done
rows hold no NaN/inf; ragged records exist for done rows only, every done row has some, and
they hold no NaN. Arrays are read one snapshot chunk at a time, so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import zarr
from tqdm.auto import tqdm

from phstore.provenance import record_key
from phstore.store import DONE, FAILED, FRAMES, PENDING, RECORDS, SNAPSHOT, TARGET, FeatureStore, records_name

#: Analyses, whose groups may cover a subset of the snapshots; every other group (a descriptor,
#: predictions) must end each snapshot done or failed.
PARTIAL = ("map", "inverse")


@dataclass
class VerifyReport:
    """Problems found (``where: what``) and how much was read."""

    problems: list[str] = field(default_factory=list)
    groups: int = 0
    snapshots: int = 0
    chunks: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _chunks(arr: zarr.Array, n: int, where: str, report: VerifyReport) -> Iterator[tuple[slice, np.ndarray]]:
    """``(rows, values)`` of the first ``n`` rows of a snapshot array, one chunk at a time; a
    chunk that does not decode is reported and ends the scan of that array."""
    step = arr.chunks[0]
    for lo in range(0, n, step):
        rows = slice(lo, min(n, lo + step))
        try:
            values = arr[rows]
        except Exception as exc:  # any decoding or I/O error is a problem to report, not a crash
            report.problems.append(f"{where}: chunk unreadable: {type(exc).__name__}: {exc}")
            return
        report.chunks += 1
        yield rows, values


def _read_all(arr: zarr.Array, n: int, where: str, report: VerifyReport) -> np.ndarray:
    """The first ``n`` rows of a small (one value per snapshot) array, read chunk by chunk."""
    return np.concatenate([arr[0:0], *(values for _, values in _chunks(arr, n, where, report))])


def _check_frames(group: zarr.Group, n: int, where: str, report: VerifyReport) -> None:
    for name, arr in group.arrays():
        if arr.shape[0] < n:
            report.problems.append(f"{where}/{name}: {arr.shape[0]} rows, but {n} snapshots are committed")
        elif name == "content_hash":
            hashes = _read_all(arr, n, f"{where}/{name}", report)
            if len(np.unique(hashes)) != len(hashes):
                report.problems.append(
                    f"{where}: {len(hashes) - len(np.unique(hashes))} duplicate snapshots (same content hash)"
                )
        elif name == TARGET:
            energy = _read_all(arr, n, f"{where}/{name}", report)
            if np.isinf(energy).any():  # NaN: an unlabelled snapshot
                report.problems.append(f"{where}: {int(np.isinf(energy).sum())} snapshots with an infinite energy")
        else:
            for _ in _chunks(arr, n, f"{where}/{name}", report):
                pass


def _check_records(
    store: FeatureStore, collection: str, group: zarr.Group, status: np.ndarray, where: str, report: VerifyReport
) -> None:
    stored = dict(group[RECORDS].arrays()) if RECORDS in dict(group.groups()) else {}
    for c in range(store.n_chunks(collection)):
        region = store.chunk_rows(collection, c)
        rows = status[region]
        name = records_name(c)
        if name not in stored:
            if (rows == DONE).any():
                report.problems.append(
                    f"{where}/{RECORDS}/{name}: missing, but {int((rows == DONE).sum())} rows are done"
                )
            continue
        try:
            records = stored[name][...]
        except Exception as exc:
            report.problems.append(f"{where}/{RECORDS}/{name}: unreadable: {type(exc).__name__}: {exc}")
            continue
        report.chunks += 1
        owners = records[:, 0].astype(int) if records.size else np.empty(0, int)
        if np.isnan(records).any():
            report.problems.append(f"{where}/{RECORDS}/{name}: NaN in the records")
        if ((owners < 0) | (owners >= len(rows))).any() or (owners.size and (rows[owners] != DONE).any()):
            report.problems.append(f"{where}/{RECORDS}/{name}: records of rows that are not done")
        empty = np.setdiff1d(np.flatnonzero(rows == DONE), owners)
        if empty.size:
            report.problems.append(
                f"{where}/{RECORDS}/{name}: done rows {(empty + region.start).tolist()} have no records"
            )


def _check_group(
    store: FeatureStore, collection: str, group: zarr.Group, name: str, where: str, report: VerifyReport
) -> None:
    n = store.n_snapshots(collection)
    prov = dict(group.attrs.get("provenance", {}))
    if not {"descriptor", "params", "versions", "key"} <= set(prov):
        report.problems.append(f"{where}: no provenance record")
        return
    if record_key(prov) != prov["key"] or name != f"{prov['descriptor']}-{prov['key']}":
        report.problems.append(
            f"{where}: provenance record hashes to {record_key(prov)}, "
            f"but the group claims {name.rpartition('-')[2]} (record key {prov['key']})"
        )
    arrays = dict(group.arrays())
    held = min(n, arrays["status"].shape[0])  # rows past the array are pending
    status = _read_all(arrays["status"], held, f"{where}/status", report)
    unread = held - len(status)  # after a chunk that does not decode (reported): not known pending
    status = np.concatenate([status, np.full(n - len(status), PENDING, dtype=status.dtype)])
    if not np.isin(status, (PENDING, DONE, FAILED)).all():
        report.problems.append(f"{where}: status codes other than pending/done/failed")
    pending = int((status == PENDING).sum()) - unread
    if pending and prov["descriptor"] not in PARTIAL:
        report.problems.append(f"{where}: {pending} snapshots pending (run `phstore featurize` to finish them)")
    for var, arr in arrays.items():
        if var == "status" or arr.metadata.dimension_names[0] != SNAPSHOT:
            continue
        bad_errors, not_finite = False, []
        for rows, values in _chunks(arr, min(n, arr.shape[0]), f"{where}/{var}", report):
            done, failed = status[rows] == DONE, status[rows] == FAILED
            if var == "error":
                errors = np.asarray(values, dtype=object)
                bad_errors |= any(errors[done]) or not all(errors[failed])
            elif values.dtype.kind == "f":
                finite = np.isfinite(values[done]).all(axis=tuple(range(1, values.ndim)))
                not_finite += (rows.start + np.flatnonzero(done)[~finite]).tolist()
        if bad_errors:
            report.problems.append(f"{where}: error messages on done rows or failed rows without one")
        if not_finite:
            report.problems.append(f"{where}/{var}: NaN or inf in done snapshots {not_finite[:10]}")
    if RECORDS in dict(group.groups()):
        _check_records(store, collection, group, status, where, report)


def verify_store(path: str | Path, progress: bool = True) -> VerifyReport:
    """Check the whole store at ``path``; see the module docstring for what is checked."""
    store = FeatureStore(path, mode="r")
    report = VerifyReport()
    for coll in tqdm(store.collections, desc="verify", unit="collection", disable=not progress):
        n = store.n_snapshots(coll)
        report.snapshots += n
        root = store.zarr_group(coll)
        for name, group in sorted(root.groups()):
            where = f"{coll}/{name}"
            if name == FRAMES:
                _check_frames(group, n, where, report)
            else:
                report.groups += 1
                _check_group(store, coll, group, name, where, report)
    return report
