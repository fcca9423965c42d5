"""The flow lake on disk.

Layout (Hive partitioning, readable as one table by pandas, ``pyarrow.dataset`` and DuckDB)::

    <lake>/flows/batch=<id>/part-00000.parquet   zstd, FLOW_SCHEMA, one part per input file
    <lake>/flows/batch=<id>/_manifest.json       files, sha256, rows, extractor (ignored by readers: '_')
    <lake>/quarantine/<sha12>-<name>              a bad input file, beside <sha12>-<name>.reason.txt
    <lake>/reports/batch=<id>/...                 per-batch reports (see lake.reports)

A batch is written into ``<lake>/flows/.tmp-batch=<id>-...`` and renamed into place when complete, so it is
either whole or absent. The ingest ledger (which file contents are already in the lake) is derived from the
batch manifests, so it can never disagree with the data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from flowhawk.common.files import atomic_write_text, remove_stale_temps
from flowhawk.extractors.schema import FLOW_SCHEMA
from flowhawk.lake.inputs import copy_regular

BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MANIFEST = "_manifest.json"


def validate_batch_id(batch_id: str) -> str:
    if not BATCH_ID_RE.match(batch_id or ""):
        raise ValueError(
            f"batch id {batch_id!r}: must be 1-64 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return batch_id


class Lake:
    """A lake rooted at ``root`` (created on first write)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.flows_dir = self.root / "flows"
        self.reports_dir = self.root / "reports"
        self.quarantine_dir = self.root / "quarantine"

    # --- batches -----------------------------------------------------------------------------------
    def batch_dir(self, batch_id: str) -> Path:
        return self.flows_dir / f"batch={validate_batch_id(batch_id)}"

    def batches(self) -> list[str]:
        """Complete batches, oldest first (by manifest write time, then id)."""
        if not self.flows_dir.is_dir():
            return []
        found = []
        for entry in self.flows_dir.iterdir():
            manifest = entry / MANIFEST
            if entry.name.startswith("batch=") and manifest.is_file():
                found.append((json.loads(manifest.read_text()).get("created", ""), entry.name[6:]))
        return [bid for _, bid in sorted(found)]

    def has_batch(self, batch_id: str) -> bool:
        return (self.batch_dir(batch_id) / MANIFEST).is_file()

    def batch_manifest(self, batch_id: str) -> dict:
        path = self.batch_dir(batch_id) / MANIFEST
        if not path.is_file():
            raise KeyError(f"{self.root}: no batch {batch_id!r}")
        return json.loads(path.read_text())

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

    def cleanup(self) -> int:
        """Remove temporary leftovers of killed writers; returns how many."""
        return sum(remove_stale_temps(d) for d in (self.flows_dir, self.reports_dir, self.quarantine_dir))

    # --- reading ----------------------------------------------------------------------------------
    def part_files(self, batches: list[str] | None = None) -> list[Path]:
        chosen = self.batches() if batches is None else [validate_batch_id(b) for b in batches]
        missing = [b for b in chosen if not self.has_batch(b)]
        if missing:
            raise KeyError(f"{self.root}: no such batch(es) {missing}")
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
        """All complete batches as one pyarrow dataset (with the Hive ``batch`` partition column)."""
        part = ds.partitioning(pa.schema([("batch", pa.string())]), flavor="hive")
        schema = FLOW_SCHEMA.append(pa.field("batch", pa.string()))
        return ds.dataset(self.flows_dir, format="parquet", partitioning=part, schema=schema)

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
        return target
