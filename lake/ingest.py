"""Ingest input files into the lake as one atomic batch.

Per file: hash the content (the ledger key), skip content already in the lake, detect the format from its
bytes, stream the extractor's frames through labelling and ``schema.conform`` into a Parquet part in the
batch's temporary folder. A file that fails is removed from the batch and quarantined with its reason; the
rest continue. The batch folder is renamed into place only when every file is done.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from flowhawk.common.files import atomic_write_json, replace_dir, tmp_sibling
from flowhawk.extractors.base import SOURCES, BadInputError, ExtractNotes, Extractor, sniff_format
from flowhawk.extractors.labels import LabelRules
from flowhawk.extractors.nfcsv_to_flows import NfCsvExtractor
from flowhawk.extractors.pcap_to_flows import PcapConfig, PcapExtractor
from flowhawk.extractors.schema import FLOW_SCHEMA, FLOW_START, SCHEMA_VERSION, conform
from flowhawk.extractors.zeek_to_flows import ZeekConnExtractor
from flowhawk.lake.inputs import InputFile, check_unchanged, open_input
from flowhawk.lake.store import MANIFEST, Lake, validate_batch_id

log = logging.getLogger(__name__)
ProgressFn = Callable[["FileResult", int, int], None]


@dataclass(frozen=True)
class IngestConfig:
    """How to ingest: where to, which batch, labels, forced source kind, quarantine behaviour."""

    lake: Path  # a local folder, or the working copy of an object-store lake (common.objectstore.working_copy)
    batch_id: str | None = None
    labels: Path | None = None
    source: str = "auto"
    quarantine: str = "copy"  # "copy" a bad file into quarantine (the original stays), or "move" it
    compression: str = "zstd"
    nf_compatible: bool = True  # pcap: NF accounting (IP bytes, 120 s active timeout); False = nfstream defaults

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r}: must be one of {', '.join(SOURCES)}")
        if self.quarantine not in ("move", "copy"):
            raise ValueError(f"quarantine {self.quarantine!r}: must be 'move' or 'copy'")
        if self.batch_id is not None:
            validate_batch_id(self.batch_id)


@dataclass
class FileResult:
    path: Path
    status: str = "pending"  # ingested | duplicate | quarantined
    sha256: str | None = None
    kind: str | None = None
    flows: int = 0
    packets: int = 0
    size_bytes: int = 0
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    labelled: dict[str, int] = field(default_factory=dict)
    hashed: InputFile | None = field(default=None, repr=False)  # identity checked again after extraction

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items() if k != "hashed"}


@dataclass
class IngestSummary:
    batch_id: str | None
    files: list[FileResult]
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def flows(self) -> int:
        return sum(f.flows for f in self.files if f.status == "ingested")

    @property
    def packets(self) -> int:
        return sum(f.packets for f in self.files if f.status == "ingested")

    @property
    def megabytes(self) -> float:
        return sum(f.size_bytes for f in self.files if f.status == "ingested") / 1e6

    @property
    def ok(self) -> bool:
        return self.count("quarantined") == 0

    def line(self) -> str:
        rate = self.megabytes / self.seconds if self.seconds else 0.0
        return (
            f"batch {self.batch_id or '-'}: {len(self.files)} files ({self.count('ingested')} ingested, "
            f"{self.count('duplicate')} already in lake, {self.count('quarantined')} quarantined), "
            f"{self.flows:,} flows, {self.packets:,} packets, {self.megabytes:.1f} MB in {self.seconds:.1f} s "
            f"({rate:.1f} MB/s)"
        )


@dataclass(frozen=True)
class ExtractorChoice:
    """One row of the extractor table: the kinds ``sniff_format`` detects, the ``--source`` that selects them,
    and how the extractor is built for an ingest."""

    kinds: tuple[str, ...]
    source: str
    build: Callable[[IngestConfig], Extractor]


EXTRACTORS: tuple[ExtractorChoice, ...] = (
    ExtractorChoice(("pcap", "pcapng"), "pcap", lambda c: PcapExtractor(PcapConfig(nf_compatible=c.nf_compatible))),
    ExtractorChoice(("zeek",), "zeek", lambda c: ZeekConnExtractor()),
    ExtractorChoice(("nf-csv",), "nf-csv", lambda c: NfCsvExtractor()),
)


def extractor_for(path: Path, kind: str, config: IngestConfig) -> Extractor:
    """The extractor for a sniffed kind; BadInputError when ``config.source`` asks for another kind."""
    for choice in EXTRACTORS:
        if kind in choice.kinds:
            if config.source not in ("auto", choice.source):
                raise BadInputError(path, f"--source {config.source} given, but the content is {kind}")
            return choice.build(config)
    raise BadInputError(path, f"no extractor for content kind {kind!r}")


def default_batch_id(hashes: Sequence[str]) -> str:
    """A batch id derived from the file contents: the same files always map to the same batch."""
    digest = hashlib.sha256("".join(sorted(hashes)).encode()).hexdigest()[:12]
    return f"b-{digest}"


def _labelled_frames(frames: Iterator[pd.DataFrame], rules: LabelRules | None, result: FileResult
                     ) -> Iterator[pd.DataFrame]:
    for frame in frames:
        if rules is not None:
            labelled = rules.apply(frame)
            frame = labelled.frame
            for name, n in labelled.counts.items():
                result.labelled[name] = result.labelled.get(name, 0) + int(n)
        yield frame


def _write_part(path: Path, result: FileResult, extractor: Extractor, rules: LabelRules | None,
                batch_id: str, config: IngestConfig) -> None:
    """Stream one input file into one Parquet part; row groups follow the extractor's chunks."""
    notes = ExtractNotes()
    provenance = {"batch_id": batch_id, "source_file": result.path.name,
                  "source_sha256": result.sha256, "extractor": extractor.name}
    offset = 0
    with pq.ParquetWriter(path, FLOW_SCHEMA, compression=config.compression) as writer:
        for frame in _labelled_frames(_contained(extractor.frames(result.path, notes), result.path), rules, result):
            if not len(frame):
                continue
            if "flow_index" not in frame.columns or frame["flow_index"].isna().all():
                frame = frame.assign(flow_index=range(offset, offset + len(frame)))
            table = conform(frame, **provenance)
            writer.write_table(table)
            offset += len(frame)
            result.packets += _packets(frame)
            del frame, table  # do not hold the previous chunk while the extractor builds the next
    result.flows = offset
    result.notes = notes.messages
    if offset == 0:
        raise BadInputError(result.path, "no flows in file" + (f" ({'; '.join(notes.messages)})"
                                                              if notes.messages else ""))


def _contained(frames: Iterator[pd.DataFrame], path: Path) -> Iterator[pd.DataFrame]:
    """The extractor's frames; any error it raises other than an OSError (the machine's, not the file's: a
    full disk, EIO) becomes a BadInputError, so one hostile file costs that file, never the run."""
    try:
        yield from frames
    except (BadInputError, OSError):
        raise
    except Exception as exc:
        log.exception("%s: unexpected extractor error", path)
        raise BadInputError(path, f"extractor failed: {type(exc).__name__}: {exc}") from None


def _packets(frame: pd.DataFrame) -> int:
    return int(sum(frame[c].fillna(0).sum() for c in ("IN_PKTS", "OUT_PKTS") if c in frame.columns))


def _load_rules(config: IngestConfig) -> LabelRules | None:
    if config.labels is None:
        return None
    return LabelRules.from_csv(Path(config.labels))


def _hash_and_sniff(result: FileResult, config: IngestConfig) -> None:
    result.hashed = open_input(result.path)  # regular files only, never through a link
    result.sha256, result.size_bytes = result.hashed.sha256, result.hashed.size
    result.kind = sniff_format(result.path)


def ingest_paths(paths: Sequence[Path | str], config: IngestConfig,
                 progress: ProgressFn | None = None) -> IngestSummary:
    """Ingest ``paths`` into one batch of ``config.lake``; bad files are quarantined, the rest land.

    Content already in the lake (by sha256) is skipped, so re-running is a no-op. Raises BadInputError
    only for a bad labels file (nothing could be labelled); per-file problems are in the summary.
    """
    started = time.perf_counter()
    lake = Lake(config.lake)
    lake.cleanup()
    rules = _load_rules(config)
    results = [FileResult(path=Path(p)) for p in paths]
    ledger, seen = lake.ledger(), set()
    for result in results:
        try:
            _hash_and_sniff(result, config)
        except BadInputError as exc:
            _quarantine(lake, result, exc.reason, config)
            continue
        if result.sha256 in ledger or result.sha256 in seen:
            result.status = "duplicate"
            result.reason = f"content already in batch {ledger.get(result.sha256, '(this run)')}"
        seen.add(result.sha256)
    todo = [r for r in results if r.status == "pending"]
    batch_id = config.batch_id or (default_batch_id([r.sha256 for r in todo]) if todo else None)
    if todo:
        _write_batch(lake, batch_id, todo, rules, config, progress, len(results))
    summary = IngestSummary(batch_id=batch_id if any(r.status == "ingested" for r in results) else None,
                            files=results, seconds=time.perf_counter() - started)
    log.info(summary.line())
    return summary


def _quarantine(lake: Lake, result: FileResult, reason: str, config: IngestConfig) -> None:
    result.status, result.reason = "quarantined", reason
    log.warning("%s: %s (quarantined)", result.path, reason)
    lake.quarantine(result.path, result.sha256, reason, move=config.quarantine == "move")


def _write_batch(lake: Lake, batch_id: str, todo: list[FileResult], rules: LabelRules | None,
                 config: IngestConfig, progress: ProgressFn | None, total: int) -> None:
    if lake.has_batch(batch_id):
        raise FileExistsError(f"{lake.batch_dir(batch_id)}: batch {batch_id} already exists; choose another id")
    final = lake.batch_dir(batch_id)
    staging = tmp_sibling(final)
    staging.mkdir(parents=True)
    try:
        for i, result in enumerate(todo):
            part = staging / f"part-{i:05d}.parquet"
            try:
                _write_part(part, result, extractor_for(result.path, result.kind, config), rules, batch_id, config)
                check_unchanged(result.hashed)  # what was read is what was hashed
                result.status = "ingested"
            except (BadInputError, ValueError) as exc:  # ValueError: a value the schema cannot hold
                part.unlink(missing_ok=True)
                result.flows = result.packets = 0
                _quarantine(lake, result, getattr(exc, "reason", str(exc)), config)
            if progress:
                progress(result, i + 1, total)
        good = [r for r in todo if r.status == "ingested"]
        if not good:
            shutil.rmtree(staging, ignore_errors=True)
            return
        parts = {id(r): f"part-{i:05d}.parquet" for i, r in enumerate(todo)}
        starts = start_range([staging / parts[id(r)] for r in good])
        atomic_write_json(staging / MANIFEST, _manifest(batch_id, good, parts, starts))
        replace_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    lake.publish_batch(batch_id)  # object store: parts, then the manifest (a kill here: lake.cleanup finishes it)


def start_range(parts: list[Path]) -> list[float] | None:
    """[first, last] FLOW_START_MILLISECONDS over ``parts`` from their Parquet statistics (no data read); None
    when a part with rows has no statistics for it (no times)."""
    lo, hi = float("inf"), float("-inf")
    for path in parts:
        meta = pq.ParquetFile(path).metadata
        column = meta.schema.names.index(FLOW_START)
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(column).statistics
            if meta.row_group(group).num_rows and (stats is None or not stats.has_min_max):
                return None
            if stats is not None and stats.has_min_max:
                lo, hi = min(lo, float(stats.min)), max(hi, float(stats.max))
    return [lo, hi] if lo <= hi else None


def _manifest(batch_id: str, good: list[FileResult], parts: dict[int, str], starts: list[float] | None) -> dict:
    return {
        "batch_id": batch_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        "schema_version": SCHEMA_VERSION,
        "rows": sum(r.flows for r in good),
        "flow_start_ms": starts,
        "files": [
            {"name": r.path.name, "path": str(r.path.resolve()), "sha256": r.sha256, "kind": r.kind,
             "part": parts[id(r)], "rows": r.flows, "packets": r.packets,
             "notes": r.notes, "labelled": r.labelled}
            for r in good
        ],
    }
