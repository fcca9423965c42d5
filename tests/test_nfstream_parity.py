"""The nfstream path on real captures (../shared/data): parity with nfstream's published results, the lab
capture's flow counts, formats by content, IPv6, 802.11, a real capture cut mid-packet.

Parity: our extractor must not lose, merge or alter flows.

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

import pandas as pd
import pytest

from flowhawk.extractors.base import BadInputError, ExtractNotes
from flowhawk.extractors.pcap_to_flows import PcapConfig, PcapExtractor
from tests.helpers import shared_path

pytestmark = pytest.mark.realdata


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


@pytest.mark.slow
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


def _extract(path: Path) -> tuple[pd.DataFrame, ExtractNotes]:
    notes = ExtractNotes()
    return pd.concat(PcapExtractor().frames(path, notes), ignore_index=True), notes


# --- real data ------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("nf_compatible", "expected"), [(True, 26_369), (False, 26_363)])
def test_lab_capture_flow_counts(nf_compatible, expected):
    path = shared_path("lab", "capture.pcap")
    notes = ExtractNotes()
    rows = sum(len(f) for f in PcapExtractor(PcapConfig(nf_compatible=nf_compatible)).frames(path, notes))
    assert rows == expected and not notes.truncated


@pytest.mark.parametrize(("relative", "kind"), [
    ("pcaps/nfstream/pcaps/gquic.pcap", b"\x0a\x0d\x0d\x0a"),  # pcapng named .pcap
    ("pcaps/ndpi/pcaps/tcp_scan.pcapng", b"\xd4\xc3\xb2\xa1"),  # pcap named .pcapng
    ("pcaps/chrissanders/http_google.pcapng", b"\x0a\x0d\x0d\x0a"),
])
def test_real_captures_by_content_not_extension(relative, kind):
    path = shared_path(*relative.split("/"))
    assert path.read_bytes()[:4] == kind
    frame, notes = _extract(path)
    assert len(frame) > 0 and not notes.truncated
    assert (frame.IN_PKTS > 0).all()


def test_real_ipv6_capture_keeps_ipv6_flows():
    frame, _ = _extract(shared_path("pcaps", "chrissanders", "http_ip4and6.pcapng"))
    assert sorted(frame.IP_VERSION) == [4, 6]
    assert frame.loc[frame.IP_VERSION == 6, "IPV4_SRC_ADDR"].str.contains(":").all()


def test_real_80211_capture_raises_no_ip_flows():
    path = shared_path("pcaps", "chrissanders", "80211beacon.pcapng")
    with pytest.raises(BadInputError, match="no IP flows"):
        list(PcapExtractor().frames(path, ExtractNotes()))


def test_real_capture_cut_mid_packet(tmp_path):
    source = shared_path("pcaps", "nfstream", "pcaps", "google_ssl.pcap")
    data = source.read_bytes()
    cut = tmp_path / "google_ssl_cut.pcap"
    cut.write_bytes(data[: len(data) - 100])
    whole, _ = _extract(source)
    part, notes = _extract(cut)
    assert notes.truncated and "cut mid-packet" in notes.messages[0]
    assert len(part) == 1 and 0 < part.IN_PKTS[0] + part.OUT_PKTS[0] < whole.IN_PKTS[0] + whole.OUT_PKTS[0]
