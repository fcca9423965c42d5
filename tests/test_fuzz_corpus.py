"""The fuzzing corpus (tests/fuzz_corpus.py, generated, small size) and property tests of the Zeek and NF CSV
parsers: every input ends ingested (maybe partly, with a note) or quarantined with a one-line reason; never a
traceback, never a partial batch. The full corpus runs from benchmarks/fuzz_campaign.py."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flowhawk.extractors.base import BadInputError, ExtractNotes
from flowhawk.extractors.nfcsv_to_flows import NfCsvExtractor
from flowhawk.extractors.schema import BY_NAME, FLOW_SCHEMA, conform
from flowhawk.extractors.zeek_to_flows import ZeekConnExtractor
from tests.fuzz_corpus import (
    NF_COLUMNS,
    ZEEK_FIELDS,
    cases,
    lake_problem,
    nf_csv,
    nf_rows,
    run_case,
    tally,
    zeek_rows,
    zeek_tsv,
)


def _run_small(tmp_path: Path, captures: bool) -> dict[str, object]:
    corpus, lake = tmp_path / "corpus", tmp_path / "lake"
    corpus.mkdir()
    outcomes = []
    for name, data in cases(seed=11, size="small", captures=captures, text=not captures):
        path = corpus / name
        path.write_bytes(data)
        outcomes.append(run_case(path, lake))
    crashes = [(o.name, o.reason) for o in outcomes if o.status == "crash"]
    assert not crashes
    assert lake_problem(lake) is None
    return {"counts": tally(outcomes), **{o.name: o for o in outcomes}}


def test_small_corpus_zeek_and_csv_never_crash(tmp_path):
    seen = _run_small(tmp_path, captures=False)
    counts = seen["counts"]
    assert counts.get("ingested", 0) > 5 and counts.get("quarantined", 0) > 5, counts
    assert counts.get("ingested with a note", 0) >= 3, counts
    assert seen["nf-bad-utf8.csv"].status == "ingested"  # one bad byte costs one value, not the file
    assert seen["zeek-json-wrong-types.log"].status == "ingested" and seen["zeek-json-wrong-types.log"].noted
    assert "decompression bomb" in seen["nf-giant-line.csv.gz"].reason


@pytest.mark.slow
def test_small_corpus_captures_never_crash(tmp_path):
    seen = _run_small(tmp_path, captures=True)
    counts = seen["counts"]
    assert counts.get("ingested", 0) > 5 and counts.get("quarantined", 0) > 3, counts
    assert "decompression bomb" in seen["pcap.gz-bomb"].reason
    assert seen["pcap.bz2"].status == "quarantined" and "unrecognised binary" in seen["pcap.bz2"].reason


def test_zeek_line_longer_than_the_limit_is_skipped_and_counted(tmp_path, monkeypatch):
    from flowhawk.extractors import zeek_to_flows

    monkeypatch.setattr(zeek_to_flows, "MAX_LINE", 4096)
    rows = zeek_rows(5, seed=1)
    text = zeek_tsv(rows).replace(b"\n#close", b"\n" + b"9" * 50_000 + b"\n#close")
    path = tmp_path / "long.log"
    path.write_bytes(text)
    notes = ExtractNotes()
    frame = pd.concat(list(ZeekConnExtractor().frames(path, notes)))
    assert len(frame) == 5 and "wrong field count 1" in notes.messages[0]


# --- property tests ---------------------------------------------------------------------------------------------
_cell = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r,\"\x00"), max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(1 << 80), max_value=1 << 80).map(str),
    st.sampled_from(["-", "(empty)", "", "inf", "-inf", "nan", "NaN", "1e400", "0x10", "T", "F"]),
)
_PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _extract(extractor: object, path: Path) -> tuple[pd.DataFrame | None, ExtractNotes]:
    """Frames conformed to the schema, or None when the file was refused (BadInputError): nothing else."""
    notes = ExtractNotes()
    try:
        frames = list(extractor.frames(path, notes))
    except BadInputError as exc:
        assert "\n" not in str(exc)
        return None, notes
    for frame in frames:
        table = conform(frame, batch_id="b", source_file="f", source_sha256="0", extractor="x")
        assert table.schema == FLOW_SCHEMA
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), notes


def _check_ranges(frame: pd.DataFrame) -> None:
    for name in frame.columns:
        if name in BY_NAME and frame[name].dtype.kind in "iuf":
            values = frame[name].dropna().astype("float64")
            assert all(math.isfinite(v) and v >= 0 for v in values), name


def _values_cost_rows(path: Path, data: bytes, n_rows: int, cells: list, extractor: object, note: str) -> None:
    """``data`` holds ``n_rows`` rows with ``cells`` (column, value) written into them in turn: the file is never
    refused, at most the touched rows are dropped (the notes say so), every number left is finite and >= 0."""
    path.write_bytes(data)
    frame, notes = _extract(extractor, path)
    assert frame is not None
    assert len(frame) >= n_rows - len({i % n_rows for i in range(len(cells))})
    if len(frame) < n_rows:
        assert note.format(n=n_rows - len(frame)) in notes.messages[0]
    _check_ranges(frame)


def _spliced(path: Path, text: bytes, data: bytes, cut: int, extractor: object) -> None:
    path.write_bytes(text[:cut] + data + text[cut:])
    frame, _ = _extract(extractor, path)
    if frame is not None:
        _check_ranges(frame)


@_PROPS
@given(cells=st.lists(st.tuples(st.integers(0, len(ZEEK_FIELDS) - 1), _cell), max_size=12),
       seed=st.integers(0, 1000))
@example(cells=[(0, "#")], seed=0)  # a row whose first field starts with '#' was taken for a comment, uncounted
@example(cells=[(0, ""), (0, "#")], seed=0)
def test_zeek_any_field_values_cost_at_most_their_rows(tmp_path, cells, seed):
    data = zeek_tsv(_written(zeek_rows(6, seed), cells))
    _values_cost_rows(tmp_path / f"z{seed}.log", data, 6, cells, ZeekConnExtractor(), "skipped {n} garbled line(s)")


@_PROPS
@given(data=st.binary(max_size=300), cut=st.integers(0, 2000))
def test_zeek_arbitrary_bytes_spliced_in_never_raise_anything_but_bad_input(tmp_path, data, cut):
    _spliced(tmp_path / "z.log", zeek_tsv(zeek_rows(4, 1)), data, cut, ZeekConnExtractor())


@_PROPS
@given(cells=st.lists(st.tuples(st.integers(0, len(NF_COLUMNS) - 1), _cell), max_size=12),
       seed=st.integers(0, 1000))
def test_nf_csv_any_cell_values_cost_at_most_their_rows(tmp_path, cells, seed):
    data = nf_csv(_written(nf_rows(6, seed), cells))
    _values_cost_rows(tmp_path / f"n{seed}.csv", data, 6, cells, NfCsvExtractor(),
                      "rows with unparsable or missing values")


@_PROPS
@given(data=st.binary(max_size=300), cut=st.integers(0, 1500))
def test_nf_csv_arbitrary_bytes_spliced_in_never_raise_anything_but_bad_input(tmp_path, data, cut):
    _spliced(tmp_path / "n.csv", nf_csv(nf_rows(5, 1)), data, cut, NfCsvExtractor())


def _written(rows: list[list[str]], cells: list) -> list[list[str]]:
    out = [list(r) for r in rows]
    for i, (col, value) in enumerate(cells):
        out[i % len(out)][col] = value
    return out


FOUND_BY_THE_FULL_CORPUS = {"zeek-duplicate-fields.log"}  # cases that once crashed an extractor


def test_full_corpus_cases_that_once_crashed(tmp_path):
    chosen = [(n, d) for n, d in cases(seed=11, size="full", captures=False) if n in FOUND_BY_THE_FULL_CORPUS]
    assert len(chosen) == len(FOUND_BY_THE_FULL_CORPUS)
    for name, data in chosen:
        (tmp_path / name).write_bytes(data)
        outcome = run_case(tmp_path / name, tmp_path / "lake")
        assert outcome.status != "crash", outcome
