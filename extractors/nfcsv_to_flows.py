"""NF dataset CSV (NF-BoT-IoT v1/v2 and any NF-* CSV, gzip ok) -> flow frames.

Columns are selected by name (v2 orders them differently from v1); every schema column the CSV has is kept,
anything else (``Dataset``, unknown extras) is dropped. The 12 NF-v1 features are required; a CSV without one
of them -> BadInputError listing the missing columns. The file is read in chunks (``pd.read_csv(chunksize)``).
``flow_index`` is the row's 0-based position among the file's data rows: the NF CSVs have no timestamps, so
file order is the only order there is (dropped rows leave gaps).

Cleaning rules, each counted in the notes (evidence from NF-BoT-IoT-v2_reduced_c2dc, 278,781 rows):

* ``FLOW_DURATION_MILLISECONDS`` wrap-around. 91.4 % of rows (254,718) hold 4,291,467..4,294,966; every other
  row holds exactly 0. For the wrapped rows ``2^32/1000 - value`` equals max(DURATION_IN, DURATION_OUT) in 97.3 %
  of rows and is within 16 ms (one Windows timer tick) of it in 99.8 %; for the rest FLOW_DURATION equals
  max(DURATION_IN, DURATION_OUT) in 100 % of rows. So the values are a uint32 underflow of a negative
  (first - last) difference in microseconds, divided by 1000. Rule: a value within ``wrap_window_ms`` below
  2^32/1000 is replaced by max(DURATION_IN, DURATION_OUT) when the CSV has both (NF-v2), else by
  round(2^32/1000 - value) (NF-v1 has no per-direction durations). DURATION_IN/OUT in that window -> null.
* ``SRC_TO_DST_SECOND_BYTES`` / ``DST_TO_SRC_SECOND_BYTES`` are not rates: they are the per-second byte counts
  written one after another as digits (two 28-byte packets in different seconds -> 2828.0: 86.6 % of the
  178,925 two-equal-packet flows; the other 13.4 % are in one second and equal IN_BYTES). Long flows therefore
  reach 8e18 (src) and 2.8e27 (dst). Rule: values above ``max_bytes_per_second`` (default 100 Gbit/s) -> null
  (74 src / 33 dst rows here); smaller values are kept as published, so use these columns with care.
* ``L7_PROTO`` stays a float (nDPI master.app). ``APPLICATION_NAME`` stays null: the ids come from the nDPI the
  dataset was made with, whose numbering differs from the bundled one, so naming them would mislabel flows.
* Exact duplicate rows (all selected columns equal) are dropped, across chunks too: a set of 64-bit row hashes
  (8 bytes per kept row; a false match needs a hash collision, ~N^2/2^65) — 2 rows here.
* ``Label`` kept (0/1); ``Attack`` kept with benign spellings (benign/BENIGN/normal) normalised to 'Benign'.
* Rows with an unparsable number or a missing NF-v1 feature, and lines the CSV parser rejects (too many fields),
  are skipped and counted. A number the column cannot hold (inf, a negative, more than the integer type holds,
  a port above 65535) is set null and counted; when it is an NF-v1 feature its row is skipped. Bytes that are not
  UTF-8 become U+FFFD in their value; gzip input may not inflate beyond ``decompress.MAX_RATIO``.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from flowhawk.common.config import config_from_mapping
from flowhawk.extractors.base import BadInputError, ExtractNotes, read_head
from flowhawk.extractors.decompress import open_binary
from flowhawk.extractors.schema import BENIGN, BY_NAME, NF_V1_FEATURES, PROVENANCE

log = logging.getLogger(__name__)
VERSION = "nf-csv/1"
WRAP_MS = 2**32 / 1000  # 4,294,967.296 ms: where a uint32 microsecond difference wraps
_TEXT = {"IPV4_SRC_ADDR", "IPV4_DST_ADDR", "Attack", "APPLICATION_NAME"}
_RATES = ("SRC_TO_DST_SECOND_BYTES", "DST_TO_SRC_SECOND_BYTES")
_BENIGN_WORDS = {"benign", "normal"}
_INT_LIMITS = {"L4_SRC_PORT": 65536, "L4_DST_PORT": 65536, "PROTOCOL": 256}  # exclusive upper bounds


@dataclass(frozen=True)
class NfCsvConfig:
    """``chunk_rows`` rows per frame; ``wrap_window_ms``: durations this close below 2^32/1000 ms are wrapped;
    ``max_bytes_per_second``: *_SECOND_BYTES above it are absurd; ``drop_duplicates``: drop exact duplicates."""

    chunk_rows: int = 100_000
    wrap_window_ms: int = 600_000
    max_bytes_per_second: float = 1.25e10
    drop_duplicates: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.chunk_rows, int) or not 1 <= self.chunk_rows <= 10_000_000:
            raise ValueError(f"NfCsvConfig.chunk_rows must be an int in 1..10000000, got {self.chunk_rows!r}")
        if not isinstance(self.wrap_window_ms, int) or not 0 <= self.wrap_window_ms <= 4_000_000:
            raise ValueError(f"NfCsvConfig.wrap_window_ms must be an int in 0..4000000, got {self.wrap_window_ms!r}")
        if not isinstance(self.max_bytes_per_second, (int, float)) or not self.max_bytes_per_second > 0:
            raise ValueError(f"NfCsvConfig.max_bytes_per_second must be > 0, got {self.max_bytes_per_second!r}")
        if not isinstance(self.drop_duplicates, bool):
            raise ValueError(f"NfCsvConfig.drop_duplicates must be True or False, got {self.drop_duplicates!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> NfCsvConfig:
        return config_from_mapping(cls, values)  # type: ignore[return-value]


class NfCsvExtractor:
    """NF-* dataset CSV -> frames of schema columns, cleaned by the rules in the module docstring."""

    name = VERSION

    def __init__(self, config: NfCsvConfig | None = None) -> None:
        self.config = config or NfCsvConfig()

    def frames(self, path: Path, notes: ExtractNotes) -> Iterator[pd.DataFrame]:
        path = Path(path)
        read_head(path, 1)  # BadInputError for a missing, unreadable or directory path
        columns = _columns(path)
        stats: Counter[str] = Counter()
        seen = np.empty(0, dtype=np.uint64)
        offset = 0
        # all columns are parsed (no usecols) so that a line with too many fields is rejected, not cut short
        source = open_binary(path)  # gzip within the bomb limit
        reader = pd.read_csv(source, chunksize=self.config.chunk_rows,
                             dtype={c: "string" for c in columns if c in _TEXT}, on_bad_lines="warn",
                             encoding="utf-8-sig", encoding_errors="replace", low_memory=False)
        try:
            while True:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    chunk = next(reader, None)
                stats["rejected lines"] += sum(str(w.message).count("Skipping line") for w in caught)
                if chunk is None:
                    break
                chunk = chunk[columns]
                chunk.index = pd.RangeIndex(offset, offset + len(chunk))
                offset += len(chunk)
                if self.config.drop_duplicates:
                    chunk, seen = _drop_duplicates(chunk, seen, stats)
                frame = _clean(chunk, self.config, stats)
                if len(frame):
                    yield frame
        except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
            raise BadInputError(path, f"unreadable NF CSV: {exc}") from None
        finally:
            reader.close()
            source.close()
        _report(path, stats, notes)


def _columns(path: Path) -> list[str]:
    try:
        with open_binary(path) as source:
            header = pd.read_csv(source, nrows=0, encoding="utf-8-sig", encoding_errors="replace").columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise BadInputError(path, f"unreadable NF CSV header: {exc}") from None
    names = [str(c) for c in header]
    missing = [c for c in NF_V1_FEATURES if c not in names]
    if missing:
        raise BadInputError(path, f"NF CSV lacks required column(s): {', '.join(missing)}")
    return [c for c in names if c in BY_NAME and c not in PROVENANCE]


def _drop_duplicates(chunk: pd.DataFrame, seen: np.ndarray, stats: Counter[str]
                     ) -> tuple[pd.DataFrame, np.ndarray]:
    hashes = pd.util.hash_pandas_object(chunk, index=False).to_numpy(np.uint64)
    dup = pd.Series(hashes).duplicated().to_numpy() | np.isin(hashes, seen)
    stats["duplicate rows dropped"] += int(dup.sum())
    return chunk[~dup], np.union1d(seen, hashes[~dup])


def _clean(chunk: pd.DataFrame, config: NfCsvConfig, stats: Counter[str]) -> pd.DataFrame:
    frame = chunk.copy()
    bad = pd.Series(False, index=frame.index)
    for name in frame.columns:
        if name in _TEXT:
            frame[name] = frame[name].str.strip()
            continue
        if frame[name].dtype == object:
            parsed = pd.to_numeric(frame[name], errors="coerce")
            bad |= parsed.isna() & frame[name].notna()
            frame[name] = parsed
        frame[name] = _in_range(frame[name], name, stats)
    bad |= frame[list(NF_V1_FEATURES)].isna().any(axis=1)
    stats["rows with unparsable or missing values"] += int(bad.sum())
    frame = frame[~bad].copy()
    _unwrap_durations(frame, config.wrap_window_ms, stats)
    for name in _RATES:
        if name in frame.columns:
            absurd = frame[name].abs() > config.max_bytes_per_second
            stats[f"{name} > {config.max_bytes_per_second:g} set null"] += int(absurd.sum())
            frame[name] = frame[name].astype("float64").mask(absurd)
    _labels(frame)
    for name in frame.columns:  # integer columns that held a NaN before bad rows were dropped
        if frame[name].dtype.kind == "f" and pa.types.is_integer(BY_NAME[name].type):
            frame[name] = frame[name].round().astype("Int64")
    frame["flow_index"] = frame.index.to_numpy(np.int64)
    return frame.reset_index(drop=True)


def _in_range(values: pd.Series, name: str, stats: Counter[str]) -> pd.Series:
    """``values`` with every value its column cannot hold set null (counted): inf, nan text, negatives (no NF
    field is signed), and numbers beyond the column's integer type (a 23-digit counter)."""
    if values.dtype.kind not in "iuf":
        return values
    column_type = BY_NAME[name].type
    high = _INT_LIMITS.get(name) or (2 ** (column_type.bit_width - 1) if pa.types.is_integer(column_type) else None)
    as_float = values.astype("float64")  # uint64 above 2^63 and floats compare alike; nan stays unset
    bad = np.isinf(as_float) | (as_float < 0)
    if high is not None:
        bad |= as_float >= high
    if name == "Label":
        bad |= ~as_float.isin([0.0, 1.0]) & as_float.notna()
    count = int(bad.sum())
    if not count:
        return values
    stats[f"{name} out of range (inf, negative or too large) set null"] += count
    return as_float.mask(bad)


def _wrapped(values: pd.Series, window_ms: int) -> pd.Series:
    return (values > WRAP_MS - window_ms) & (values <= WRAP_MS + 1)


def _unwrap_durations(frame: pd.DataFrame, window_ms: int, stats: Counter[str]) -> None:
    if window_ms == 0:
        return
    duration = frame["FLOW_DURATION_MILLISECONDS"].astype("float64")
    wrapped = _wrapped(duration, window_ms)
    directions = [c for c in ("DURATION_IN", "DURATION_OUT") if c in frame.columns]
    for name in directions:
        bad = _wrapped(frame[name].astype("float64"), window_ms)
        stats[f"{name} wrapped set null"] += int(bad.sum())
        frame[name] = frame[name].astype("float64").mask(bad)
    if len(directions) == 2:
        fix = frame[directions].max(axis=1, skipna=False)
        stats["FLOW_DURATION_MILLISECONDS wrapped -> max(DURATION_IN, DURATION_OUT)"] += int(wrapped.sum())
    else:
        fix = (WRAP_MS - duration).round()
        stats["FLOW_DURATION_MILLISECONDS wrapped -> 2^32/1000 - value"] += int(wrapped.sum())
    frame["FLOW_DURATION_MILLISECONDS"] = duration.mask(wrapped, fix)


def _labels(frame: pd.DataFrame) -> None:
    if "Label" in frame.columns:
        frame["Label"] = pd.to_numeric(frame["Label"], errors="coerce").astype("Int8")
    if "Attack" in frame.columns:
        benign = frame["Attack"].str.lower().isin(_BENIGN_WORDS).fillna(False).astype(bool)
        frame["Attack"] = frame["Attack"].mask(benign, BENIGN)
    elif "Label" in frame.columns:
        frame["Attack"] = pd.Series(pd.NA, index=frame.index, dtype="string").mask(
            (frame["Label"] == 0).fillna(False).astype(bool), BENIGN)


def _report(path: Path, stats: Counter[str], notes: ExtractNotes) -> None:
    found = {k: v for k, v in stats.items() if v}
    if found:
        message = "; ".join(f"{k}: {v:,}" for k, v in found.items())
        notes.add(message)
        log.info("%s: %s", path.name, message)
