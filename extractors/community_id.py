"""Community ID (v1) of every flow: the flow hash Zeek, Suricata, Arkime and Elastic compute for the same 5-tuple.

Computed with the ``communityid`` package (Corelight's reference implementation, seed 0, base64), so an alert
from flowhawk pivots to the packets and logs of other tools. The hash is direction-free: a flow and its reverse
get the same value.

Which tuple each flow contributes:
- TCP (6), UDP (17), SCTP (132): addresses and both ports; a null port gives a null ID.
- ICMP (1) / ICMPv6 (58): addresses with the ICMP type and code taken from ``ICMP_TYPE`` (type*256+code), as
  the spec requires. When the source could not derive the type (nfstream captures leave ``ICMP_TYPE`` null) the
  ID is null rather than a hash of made-up values.
- any other protocol: the addresses and the protocol number only (the spec's port-less form).
- a missing or unparseable address, or a missing protocol: null.

Identical tuples are hashed once (floods repeat them), so the cost is per distinct tuple (~75 µs each).
"""

from __future__ import annotations

import logging

import communityid
import numpy as np
import pandas as pd

_PORTED = (communityid.PROTO_TCP, communityid.PROTO_UDP, communityid.PROTO_SCTP)
_ICMP = (communityid.PROTO_ICMP, communityid.PROTO_ICMP6)
_TUPLE_COLUMNS = ("PROTOCOL", "IPV4_SRC_ADDR", "IPV4_DST_ADDR", "L4_SRC_PORT", "L4_DST_PORT", "ICMP_TYPE")
_HASHER = communityid.CommunityID(seed=0, use_base64=True)
# The package logs every hashed byte sequence at INFO (nine lines per flow): under the CLI's INFO logging that
# multiplied ingest time by four. Its warnings still show.
logging.getLogger("communityid").setLevel(logging.WARNING)


def community_id(proto: int | None, src: str | None, dst: str | None, sport: int | None = None,
                 dport: int | None = None, icmp_type: int | None = None) -> str | None:
    """The Community ID v1 string of one flow (see the module doc for which tuple is hashed), or None."""
    if proto is None or not src or not dst:
        return None
    proto = int(proto)
    if proto in _PORTED:
        if sport is None or dport is None:
            return None
        args: tuple[int, ...] = (int(sport), int(dport))
    elif proto in _ICMP:
        if icmp_type is None:
            return None
        args = (int(icmp_type) // 256, int(icmp_type) % 256)
    else:
        args = ()
    try:
        return _HASHER.calc(communityid.FlowTuple(proto, src, dst, *args))
    except (communityid.Error, ValueError):  # not an IP address (a NUL in it: ValueError), a port out of range
        return None


def community_ids(frame: pd.DataFrame) -> pd.Series:
    """Community IDs of every row of a flow frame (schema column names), aligned to ``frame.index``.

    Columns the frame lacks count as null. Each distinct tuple is hashed once.
    """
    n = len(frame)
    if n == 0:
        return pd.Series([], index=frame.index, dtype=object)
    cols = {c: (frame[c] if c in frame.columns else pd.Series([None] * n, index=frame.index, dtype=object))
            for c in _TUPLE_COLUMNS}
    keys = pd.DataFrame({c: _nullable(s) for c, s in cols.items()})
    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(keys), use_na_sentinel=False)
    values = np.array([community_id(*(None if _isna(v) else v for v in row)) for row in uniques], dtype=object)
    return pd.Series(values[codes], index=frame.index, dtype=object)


def _nullable(series: pd.Series) -> pd.Series:
    """Integers stay integers (no float round trip), nulls become None, text stays text."""
    if series.dtype.kind in "if":
        return series.astype("Int64").astype(object).where(series.notna(), None)
    return series.astype(object).where(series.notna(), None)


def _isna(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))
