"""``phstore repair``: mend the damage :mod:`phstore.verify` finds.

* A descriptor group's damaged rows (values lost or not finite, records missing or lost, an
  unreadable status, values or error chunk) cannot be trusted: their whole shards are reset to
  pending (:meth:`~phstore.store.FeatureStore.reset_shards`), and the next ``phstore
  featurize`` recomputes them, giving the same values.
* A damaged row of the frames table is read again from its source file, at its frame index
  (the columns ``source`` and ``source_index``), and written back only when the frame read
  there is the one stored: its content hash equals the stored hash, or the hash of the stored
  content (then the hash itself was what was damaged). The descriptor shards of a restored
  row are reset too. A row that cannot be restored so (its source gone or changed, its keys
  lost) is named, with its source file and frame, for the user to re-ingest into a new store.

Damage to a group's provenance record is not mended: the group's features are of unknown
parameters; remove the group (its directory) and featurize again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client

from phstore.ingest import read_frames, snapshot_row
from phstore.store import FRAMES, FeatureStore, content_hash
from phstore.verify import VerifyReport, readable_rows, verify_store

#: The frames columns a source file's frame gives back (the keys and labels of a row are the
#: ingest's; they are never rewritten).
CONTENT = ("positions", "cell", "numbers", "energy", "energy_per_atom", "forces", "stress", "density", "content_hash")


@dataclass
class RepairReport:
    """What repair did: shards reset to pending per ``(collection, group)``, frames rows
    restored from their sources per collection, what it could not mend (one line each), and
    the verify report it acted on."""

    found: VerifyReport
    reset: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    restored: dict[str, list[int]] = field(default_factory=dict)
    unmended: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Everything found was mended (what was reset is recomputed by the next featurize)."""
        return not self.unmended


def _source_rows(
    store: FeatureStore, collection: str, rows: list[int], sources: dict[tuple[str, int], tuple[str, int]]
) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """The frames of ``rows`` read again from their sources, when each is the frame stored;
    and a line for each row that is not."""
    by_source: dict[str, dict[int, int]] = defaultdict(dict)
    lost = []
    for r in rows:
        if (collection, r) not in sources:
            lost.append(f"{collection} snapshot {r}: its source is not known any more (the frames table lost it)")
            continue
        path, index = sources[collection, r]
        by_source[path][index] = r
    found: dict[int, dict[str, Any]] = {}
    for path, wanted in by_source.items():
        if Path(path).is_file():
            for index, atoms in read_frames(Path(path)):
                if index in wanted and not isinstance(atoms, Exception):
                    try:
                        found[wanted[index]] = snapshot_row(atoms, Path(path), Path(path).parent, index, "")
                    except ValueError:
                        pass
                if len(found) == len(wanted):
                    break
    stored = _stored(store, collection, sorted(found))
    restored = {}
    for r in rows:
        if (collection, r) not in sources:
            continue
        path, index = sources[collection, r]
        row = found.get(r)
        if row is not None and row["content_hash"] in stored.get(r, ()):
            restored[r] = row
        else:
            why = "no longer there" if not Path(path).is_file() else "not the frame stored (changed since ingest)"
            lost.append(
                f"{collection} snapshot {r}: {path} frame {index} is {why}; re-ingest the original into a new store"
            )
    return restored, lost


def _stored(store: FeatureStore, collection: str, rows: list[int]) -> dict[int, set[int]]:
    """The hashes a frame read again may have to be the stored one: the stored hash and the hash
    of the stored content (each where it still reads)."""
    out: dict[int, set[int]] = {r: set() for r in rows}
    for r, v in readable_rows(store, collection, rows, ["content_hash"]).items():
        out[r].add(int(v["content_hash"]))
    for r, v in readable_rows(store, collection, rows, ["numbers", "positions", "cell", "energy"]).items():
        out[r].add(content_hash(v["numbers"], v["positions"], v["cell"], v["energy"]))
    return out


def repair_store(path: str | Path, client: Client | None = None, progress: bool = True) -> RepairReport:
    """Verify the store at ``path`` (on ``client``'s workers when given) and mend what it finds
    (see the module docstring), under the store's writer lock."""
    found = verify_store(path, client, progress)
    report = RepairReport(found)
    store = FeatureStore(path, mode="r+")
    frames: dict[str, set[int]] = defaultdict(set)
    shards: dict[tuple[str, str], set[int]] = defaultdict(set)
    for d in found.damage:
        if d.whole_group:
            report.unmended.append(
                f"{d.collection}/{d.group}: {d.what}; remove the group's directory and featurize again"
            )
        elif d.group == FRAMES:
            frames[d.collection].update(d.rows)
        else:
            shards[d.collection, d.group].update(store.shard_of(d.collection, d.group, d.rows).tolist())
    with store.writer("repair"):
        for coll, rows in sorted(frames.items()):
            restored, lost = _source_rows(store, coll, sorted(rows), found.sources)
            report.unmended += lost
            if restored:
                store.rewrite_frames(coll, {r: {c: row[c] for c in CONTENT} for r, row in restored.items()})
                report.restored[coll] = sorted(restored)
                for group in store.descriptor_groups(coll):
                    shards[coll, group].update(store.shard_of(coll, group, sorted(restored)).tolist())
        for (coll, group), ss in sorted(shards.items()):
            store.reset_shards(coll, group, sorted(ss))
            report.reset[coll, group] = sorted(ss)
    return report
