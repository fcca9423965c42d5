"""The flow lake on disk.

Layout (Hive partitioning, readable as one table by pandas, ``pyarrow.dataset`` and DuckDB)::

    <lake>/flows/batch=<id>/part-00000.parquet   zstd, FLOW_SCHEMA, one part per input file
    <lake>/flows/batch=<id>/_manifest.json       files, sha256, rows, extractor (ignored by readers: '_')
    <lake>/quarantine/<sha12>-<name>              a bad input file, beside <sha12>-<name>.reason.txt
    <lake>/reports/batch=<id>/...                 per-batch reports (see lake.reports)

A batch is written into ``<lake>/flows/.tmp-batch=<id>-...`` and renamed into place when complete, so it is
either whole or absent. The ingest ledger (which file contents are already in the lake) is derived from the
batch manifests, so it can never disagree with the data.

On an object store (``Lake`` of a working copy bound to ``s3://...``, see ``common.objectstore``) the same
layout lives under the URL; a batch's manifest is its commit marker, uploaded after its parts (``publish_batch``),
and the store's committed batches are the lake: listed from the store, pulled into the working copy when read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from flowhawk.common.files import atomic_write_bytes, atomic_write_text, remove_stale_temps
from flowhawk.common.objectstore import STALE_UPLOAD_S, Mirror
from flowhawk.extractors.schema import FLOW_SCHEMA
from flowhawk.lake.inputs import copy_regular

BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MANIFEST = "_manifest.json"
REPORT_MARKER = "summary.json"  # a report's file written last (its commit marker on an object store)


def validate_batch_id(batch_id: str) -> str:
    if not BATCH_ID_RE.match(batch_id or ""):
        raise ValueError(
            f"batch id {batch_id!r}: must be 1-64 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return batch_id


def batch_order(manifests: dict[str, dict]) -> list[str]:
    """Batch ids of ``manifests`` oldest first: by manifest write time, then id (the lake order)."""
    return sorted(manifests, key=lambda bid: (manifests[bid].get("created", ""), bid))


class Lake:
    """A lake rooted at ``root`` (created on first write); mirrored to an object store when ``root`` is a bound
    working copy (``self.mirror``)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.flows_dir = self.root / "flows"
        self.reports_dir = self.root / "reports"
        self.quarantine_dir = self.root / "quarantine"
        self.mirror = Mirror.of(self.root)

    # --- batches -----------------------------------------------------------------------------------
    def batch_dir(self, batch_id: str) -> Path:
        return self.flows_dir / f"batch={validate_batch_id(batch_id)}"

    def batches(self) -> list[str]:
        """Complete batches, oldest first (by manifest write time, then id)."""
        return batch_order(self._manifests())

    def _manifests(self) -> dict[str, dict]:
        """batch id -> manifest of every committed batch (on an object store: those whose marker is there)."""
        if self.mirror is not None:
            return {unit[6:]: self._remote_manifest(unit) for unit in self.mirror.committed("flows", MANIFEST)
                    if unit.startswith("batch=")}
        if not self.flows_dir.is_dir():
            return {}
        return {entry.name[6:]: json.loads((entry / MANIFEST).read_text()) for entry in self.flows_dir.iterdir()
                if entry.name.startswith("batch=") and (entry / MANIFEST).is_file()}

    def _remote_manifest(self, unit: str) -> dict:
        """A committed batch's manifest, cached in the working copy (a committed manifest never changes)."""
        local = self.flows_dir / unit / MANIFEST
        cached = self.root / ".manifests" / f"{unit}.json"
        if not local.is_file() and not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(cached, self.mirror.store.read_bytes(f"flows/{unit}/{MANIFEST}"))
        return json.loads((local if local.is_file() else cached).read_text())

    def has_batch(self, batch_id: str) -> bool:
        if self.mirror is not None:
            return self.mirror.store.exists(f"flows/batch={validate_batch_id(batch_id)}/{MANIFEST}")
        return (self.batch_dir(batch_id) / MANIFEST).is_file()

    def manifests(self) -> dict[str, dict]:
        """batch id -> manifest of every complete batch (one listing; ``batch_order`` of it = ``batches()``)."""
        return self._manifests()

    def batch_manifest(self, batch_id: str) -> dict:
        manifest = self._manifests().get(validate_batch_id(batch_id))
        if manifest is None:
            raise KeyError(f"{self.location}: no batch {batch_id!r}")
        return manifest

    @property
    def location(self) -> str:
        """The lake as a user names it: the object-store URL, or the folder."""
        return self.mirror.store.url if self.mirror is not None else str(self.root)

    def publish_batch(self, batch_id: str) -> None:
        """On an object store, upload a batch complete in the working copy: parts first, the manifest (the
        commit marker) last. No-op for a local lake."""
        if self.mirror is not None:
            self.mirror.push(f"flows/batch={validate_batch_id(batch_id)}", MANIFEST)

    def ledger(self) -> dict[str, str]:
        """sha256 of every ingested file content -> the batch holding it."""
        return {
            f["sha256"]: bid for bid in self.batches() for f in self.batch_manifest(bid)["files"]
        }

    def labelled_batches(self) -> list[str]:
        """Complete batches holding at least one labelled flow (reads only the Label and Attack columns)."""
        out = []
        for batch in self.batches():
            table = self.read_table([batch], columns=["Label", "Attack"])
            if any(col.null_count < len(col) for col in table.columns):
                out.append(batch)
        return out

    def cleanup(self, stale_upload_s: float = STALE_UPLOAD_S) -> int:
        """Remove temporary leftovers of killed writers; returns how many. On an object store also: publish
        batches committed in the working copy but not in the store (a writer killed between the two), and
        delete uncommitted uploads (batches, reports) older than ``stale_upload_s`` (a killed push)."""
        removed = sum(remove_stale_temps(d) for d in (self.flows_dir, self.reports_dir, self.quarantine_dir))
        if self.mirror is None:
            return removed
        remote = set(self.mirror.committed("flows", MANIFEST))
        for entry in sorted(self.flows_dir.glob("batch=*")) if self.flows_dir.is_dir() else []:
            if (entry / MANIFEST).is_file() and entry.name not in remote:
                self.mirror.push(f"flows/{entry.name}", MANIFEST)
        return (removed + self.mirror.clean_uncommitted("flows", MANIFEST, stale_upload_s)
                + self.mirror.clean_uncommitted("reports", REPORT_MARKER, stale_upload_s))

    # --- reading ----------------------------------------------------------------------------------
    def part_files(self, batches: list[str] | None = None) -> list[Path]:
        chosen = self.batches() if batches is None else [validate_batch_id(b) for b in batches]
        known = set(self._manifests()) if batches is not None else set(chosen)
        missing = [b for b in chosen if b not in known]
        if missing:
            raise KeyError(f"{self.location}: no such batch(es) {missing}")
        for b in chosen if self.mirror is not None else []:
            self.mirror.pull(f"flows/batch={b}", MANIFEST)
        return [p for b in chosen for p in sorted(self.batch_dir(b).glob("part-*.parquet"))]

    def read_table(self, batches: list[str] | None = None, columns: list[str] | None = None) -> pa.Table:
        """Flows of ``batches`` (all when None) in batch, file, flow order, as FLOW_SCHEMA columns."""
        files = self.part_files(batches)
        if not files:
            schema = FLOW_SCHEMA if columns is None else pa.schema([FLOW_SCHEMA.field(c) for c in columns])
            return schema.empty_table()
        return pa.concat_tables(pq.read_table(f, columns=columns, schema=FLOW_SCHEMA) for f in files)

    def read_flows(self, batches: list[str] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        return self.read_table(batches, columns).to_pandas()

    def dataset(self) -> ds.Dataset:
        """All complete batches as one pyarrow dataset (with the Hive ``batch`` partition column). On an object
        store it reads the committed parts in place (nothing is downloaded; uncommitted uploads are not in it)."""
        part = ds.partitioning(pa.schema([("batch", pa.string())]), flavor="hive")
        schema = FLOW_SCHEMA.append(pa.field("batch", pa.string()))
        if self.mirror is None:
            return ds.dataset(self.flows_dir, format="parquet", partitioning=part, schema=schema)
        store = self.mirror.store
        return ds.dataset(self.committed_files(), filesystem=store.fs, format="parquet", partitioning=part,
                          partition_base_dir=store.key("flows"), schema=schema)

    def committed_files(self) -> list[str]:
        """Every part of every complete batch, oldest batch first: store keys (``bucket/prefix/...``) on an
        object store, local paths otherwise. What outside readers (DuckDB, pandas) should read."""
        manifests = self._manifests()
        names = [(b, f["part"]) for b in self.batches() for f in manifests[b]["files"]]
        if self.mirror is None:
            return [str(self.batch_dir(b) / part) for b, part in names]
        return [self.mirror.store.key(f"flows/batch={b}/{part}") for b, part in names]

    # --- quarantine ---------------------------------------------------------------------------------
    def quarantine(self, path: Path, sha256: str | None, reason: str, move: bool = False) -> Path:
        """Put a bad input file in quarantine with a one-line reason file; returns its quarantine path.

        By default the file is copied and the original left where it is (a manual ``ingest`` must not take
        the user's files); ``move=True`` moves it (a folder that owns its files). Only a regular file reached
        without a link is copied or moved: a link, FIFO, device or directory gets the reason file only (its
        target is never read), as does a file that no longer exists.
        """
        path = Path(path)
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / f"{(sha256 or 'nohash')[:12]}-{path.name}"
        kept = copy_regular(path, target)
        if kept and move:
            path.unlink(missing_ok=True)
        atomic_write_text(target.with_name(target.name + ".reason.txt"), f"{path}: {reason}\n")
        if self.mirror is not None:
            for name in ([target.name] if kept else []) + [target.name + ".reason.txt"]:
                self.mirror.push_file(f"quarantine/{name}")
        return target
