"""Parity with nfstream's own published results: our extractor must not lose, merge or alter flows.

nfstream's test suite (tests.py ``test_ndpi_integration`` / ``generate_results.py``) runs every capture in
tests/pcaps with ``NFStreamer(source, n_dissections=20, n_meters=1)`` and compares id, bidirectional
packets and bytes (and nDPI names) with tests/results/<pcap>.csv. We run the same captures through
``PcapExtractor`` with ``nf_compatible=False`` (nfstream's defaults: link-layer bytes, 120 s idle, 1800 s
active timeout) and one meter (so the emission order is the reference order), and check the flow count and,
flow by flow, IN_PKTS+OUT_PKTS and IN_BYTES+OUT_BYTES. nfstream 6.6.0 reproduces these files, so any
difference is a bug on our side. One loop over all captures, reporting every mismatch at once.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from extractors.base import ExtractNotes
from extractors.pcap_to_flows import PcapConfig, PcapExtractor
from tests.conftest import shared_path

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _expected(csv_path: Path) -> list[tuple[int, int]]:
    with csv_path.open(newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: int(r["id"]))
    return [(int(r["bidirectional_packets"]), int(r["bidirectional_bytes"])) for r in rows]


def _ours(extractor: PcapExtractor, pcap: Path) -> tuple[list[tuple[int, int]], set[str]]:
    flows: list[tuple[int, int]] = []
    unmapped: set[str] = set()
    for frame in extractor.frames(pcap, ExtractNotes()):
        pkts = (frame["IN_PKTS"] + frame["OUT_PKTS"]).tolist()
        nbytes = (frame["IN_BYTES"] + frame["OUT_BYTES"]).tolist()
        flows.extend(zip(pkts, nbytes, strict=True))
        for name, l7 in zip(frame["APPLICATION_NAME"], frame["L7_PROTO"], strict=True):
            if math.isnan(l7) and name != "Unknown":
                unmapped.add(name)
    return flows, unmapped


def _diff(name: str, want: list[tuple[int, int]], got: list[tuple[int, int]]) -> str | None:
    if len(want) != len(got):
        return f"{name}: {len(got)} flows, expected {len(want)}"
    bad = [i for i, (w, g) in enumerate(zip(want, got, strict=True)) if w != g]
    if bad:
        i = bad[0]
        return (f"{name}: {len(bad)} of {len(want)} flows differ; first is flow {i}: "
                f"(packets, bytes) {got[i]}, expected {want[i]}")
    return None


def test_every_nfstream_reference_capture_reproduces_its_expected_results():
    base = shared_path("pcaps", "nfstream")
    expected = sorted((base / "expected_results").glob("*.csv"))
    assert len(expected) == 219, f"expected 219 reference results in {base}, found {len(expected)}"
    extractor = PcapExtractor(PcapConfig(nf_compatible=False, n_meters=1))
    problems, unmapped_names, total_flows = [], set(), 0
    for csv_path in expected:
        pcap = base / "pcaps" / csv_path.name.removesuffix(".csv")
        want = _expected(csv_path)
        try:
            got, unmapped = _ours(extractor, pcap)
        except Exception as exc:  # report it with the rest instead of stopping at the first capture
            problems.append(f"{pcap.name}: {type(exc).__name__}: {exc}")
            continue
        total_flows += len(got)
        unmapped_names |= unmapped
        if (diff := _diff(pcap.name, want, got)) is not None:
            problems.append(diff)
    assert not problems, f"{len(problems)} of {len(expected)} captures differ:\n" + "\n".join(problems)
    assert total_flows > 1000
    assert not unmapped_names, f"nDPI names without an L7_PROTO id: {sorted(unmapped_names)}"
