"""Analyst verdicts and the allowlist, stored append-only in the lake: ``<lake>/verdicts/``.

Every entry is its own small JSON file ``<created>-<id>.json``, written to a temporary name and renamed, never
edited or deleted (a later entry overrides an earlier one; an allowlist entry is withdrawn by a ``revoke``
entry naming it). Flows are never touched: a verdict points at them.

Entry kinds:
- ``verdict``: ``target_kind`` ``incident`` (an incident id), ``host`` (an address) or ``flow``
  (``<report batch>:<row in scored_flows.parquet>``, the ``event.id`` of a per-flow alert); ``verdict``
  ``false_positive`` or ``confirmed``; optional ``attack_class`` and ``note``.
- ``allow``: one of ``address`` (source or destination), ``subnet`` (CIDR), ``port`` (destination port) or
  ``signature`` (an incident's ``<source>|<behaviour>``), with a ``note``. Alerts matching a live allow entry
  are not written to ``alerts.jsonl``; the flows, incidents and host evidence stay, and the report counts the
  suppressed alerts.
- ``revoke``: withdraws the allow entry ``target``.

Each entry records ``analyst`` (who) and ``created`` (UTC, microseconds).
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from flowhawk.lake.atomic import atomic_write_json
from flowhawk.lake.store import Lake
from flowhawk.reports.hosts import HostStore
from flowhawk.reports.incidents import read_incidents
from flowhawk.reports.scored import ReportPaths, reported_batches

VERDICTS_DIR = "verdicts"
TARGET_KINDS = ("incident", "host", "flow")
VERDICTS = ("false_positive", "confirmed")
ALLOW_KINDS = ("address", "subnet", "port", "signature")


@dataclass(frozen=True)
class Allowlist:
    """The live allow entries, ready to match alerts."""

    addresses: frozenset[str] = frozenset()
    subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    ports: frozenset[int] = frozenset()
    signatures: frozenset[str] = frozenset()

    def matches(self, source: object, destination: object, dst_port: object, signature: object) -> str | None:
        """The kind of the first entry an alert matches (``address``, ``subnet``, ``port``, ``signature``)."""
        addresses = [str(a) for a in (source, destination) if isinstance(a, str) and a]
        if any(a in self.addresses for a in addresses):
            return "address"
        if self.subnets and any(_in_subnets(a, self.subnets) for a in addresses):
            return "subnet"
        if dst_port is not None and not pd.isna(dst_port) and int(dst_port) in self.ports:
            return "port"
        if signature in self.signatures:
            return "signature"
        return None


def _in_subnets(address: str, subnets: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in subnets)


@dataclass
class VerdictStore:
    """``<lake>/verdicts/``: append entries, read them back, derive the allowlist and current verdicts."""

    lake_root: Path
    directory: Path = field(init=False)

    def __post_init__(self) -> None:
        self.directory = Path(self.lake_root) / VERDICTS_DIR

    def _append(self, entry: dict) -> dict:
        now = datetime.now(timezone.utc)
        entry = {"id": uuid.uuid4().hex[:16], "created": now.isoformat(timespec="microseconds"), **entry}
        atomic_write_json(self.directory / f"{now.strftime('%Y%m%dT%H%M%S%f')}-{entry['id']}.json", entry)
        return entry

    def add_verdict(self, target_kind: str, target: str, verdict: str, analyst: str,
                    attack_class: str | None = None, note: str = "") -> dict:
        """Record a verdict on an incident, host or flow; returns the stored entry."""
        if target_kind not in TARGET_KINDS:
            raise ValueError(f"verdict target kind {target_kind!r}: must be one of {', '.join(TARGET_KINDS)}")
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r}: must be one of {', '.join(VERDICTS)}")
        if target_kind == "host":
            _check_address(target)
        if target_kind == "flow" and (":" not in target or not target.rsplit(":", 1)[1].isdigit()):
            raise ValueError(f"flow target {target!r}: must be <report batch>:<row>")
        if not target:
            raise ValueError("verdict target: empty")
        return self._append({"kind": "verdict", "target_kind": target_kind, "target": target, "verdict": verdict,
                             "attack_class": attack_class, "note": note, "analyst": analyst})

    def allow(self, kind: str, value: str, analyst: str, note: str = "") -> dict:
        """Add an allowlist entry (validated: an address, a CIDR subnet, a port 0-65535, or a signature)."""
        if kind not in ALLOW_KINDS:
            raise ValueError(f"allow kind {kind!r}: must be one of {', '.join(ALLOW_KINDS)}")
        value = _normalise_allow(kind, value)
        return self._append({"kind": "allow", "allow_kind": kind, "value": value, "note": note, "analyst": analyst})

    def revoke(self, entry_id: str, analyst: str, note: str = "") -> dict:
        if entry_id not in {e["id"] for e in self.entries() if e["kind"] == "allow"}:
            raise ValueError(f"revoke: no allowlist entry with id {entry_id!r}")
        return self._append({"kind": "revoke", "target": entry_id, "note": note, "analyst": analyst})

    def entries(self) -> list[dict]:
        """Every entry, oldest first. An unreadable file raises ValueError naming it."""
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}: unreadable verdict entry: {exc}") from None
        return out

    def allowlist(self) -> Allowlist:
        entries = self.entries()
        revoked = {e["target"] for e in entries if e["kind"] == "revoke"}
        live = [e for e in entries if e["kind"] == "allow" and e["id"] not in revoked]
        pick = lambda kind: [e["value"] for e in live if e["allow_kind"] == kind]  # noqa: E731
        return Allowlist(addresses=frozenset(pick("address")),
                         subnets=tuple(ipaddress.ip_network(v) for v in pick("subnet")),
                         ports=frozenset(int(v) for v in pick("port")), signatures=frozenset(pick("signature")))

    def current_verdicts(self) -> pd.DataFrame:
        """The latest verdict per (target_kind, target): columns id, target_kind, target, verdict, attack_class,
        note, analyst, created."""
        rows = [e for e in self.entries() if e["kind"] == "verdict"]
        columns = ["id", "target_kind", "target", "verdict", "attack_class", "note", "analyst", "created"]
        if not rows:
            return pd.DataFrame(columns=columns)
        frame = pd.DataFrame(rows)[columns]
        return frame.drop_duplicates(["target_kind", "target"], keep="last").reset_index(drop=True)


LABEL_COLUMNS = ["batch_id", "source_file", "flow_index", "Label", "Attack", "verdict_on", "verdict_id"]
_KEY = ["batch_id", "source_file", "flow_index"]


def verdict_labels(lake_root: Path) -> pd.DataFrame:
    """Labels the current verdicts give to lake flows (``LABEL_COLUMNS``; a flow is keyed by its lake
    ``batch_id``, ``source_file`` and ``flow_index``): ``false_positive`` -> Label 0 / ``Benign``,
    ``confirmed`` -> Label 1 / the verdict's attack class, else the predicted class. A host verdict covers the
    host's anomalous flows in every report, an incident verdict its flows, a flow verdict the one flow; the most
    specific wins (flow, then incident, then host). For a refresh to train on (not wired into it yet)."""
    verdicts = VerdictStore(Path(lake_root)).current_verdicts()
    reports_dir = Lake(lake_root).reports_dir
    if verdicts.empty:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    parts = []
    for report in reported_batches(reports_dir):
        flows = pq.read_table(ReportPaths.for_batch(reports_dir, report).scored_flows,
                              columns=[*_KEY, "IPV4_SRC_ADDR", "is_anomaly", "predicted_class", "incident_id"]
                              ).to_pandas()
        flows["flow"] = report + ":" + flows.index.astype(str)
        for kind, column in (("host", "IPV4_SRC_ADDR"), ("incident", "incident_id"), ("flow", "flow")):
            chosen = verdicts[verdicts["target_kind"] == kind].set_index("target")
            hit = flows[flows[column].isin(chosen.index) & (flows["is_anomaly"] | (kind == "flow"))]
            if not hit.empty:
                parts.append(_labelled(hit, chosen.loc[hit[column]], kind))
    if not parts:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    order = {"host": 0, "incident": 1, "flow": 2}
    labels = pd.concat(parts, ignore_index=True).sort_values("verdict_on", key=lambda s: s.map(order), kind="stable")
    return labels.drop_duplicates(_KEY, keep="last").reset_index(drop=True)[LABEL_COLUMNS]


def _labelled(flows: pd.DataFrame, verdicts: pd.DataFrame, kind: str) -> pd.DataFrame:
    confirmed = verdicts["verdict"].to_numpy() == "confirmed"
    attack = verdicts["attack_class"].fillna(pd.Series(flows["predicted_class"].to_numpy(), index=verdicts.index))
    return pd.DataFrame({**{k: flows[k].to_numpy() for k in _KEY}, "Label": confirmed.astype("int8"),
                         "Attack": pd.Series(attack.to_numpy(), dtype=object).where(confirmed, "Benign").to_numpy(),
                         "verdict_on": kind, "verdict_id": verdicts["id"].to_numpy()})


def check_target(lake_root: Path, kind: str, target: str) -> None:
    """ValueError (one line) unless ``target`` names an incident, host or flow of the lake's reports."""
    lake = Lake(lake_root)
    if kind == "incident":
        if target not in set(read_incidents(lake.reports_dir)["incident_id"]):
            raise ValueError(f"{lake.reports_dir}: no incident {target!r} in any batch report")
    elif kind == "host":
        if target not in set(HostStore(lake.root).read()["address"]):
            raise ValueError(f"{lake.root / 'hosts'}: no host {target!r} in the host table")
    elif kind == "flow":
        batch, _, row = target.rpartition(":")
        path = ReportPaths.for_batch(lake.reports_dir, batch).scored_flows if batch else None
        if not row.isdigit() or path is None or not path.is_file():
            raise ValueError(f"flow {target!r}: expected <report batch>:<row> of an existing report")
        if int(row) >= pq.ParquetFile(path).metadata.num_rows:
            raise ValueError(f"{path}: has no row {row}")
    else:
        raise ValueError(f"verdict target kind {kind!r}: must be one of {', '.join(TARGET_KINDS)}")


def _check_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r}: not an IP address") from None


def _normalise_allow(kind: str, value: str) -> str:
    if kind == "address":
        return _check_address(value)
    if kind == "subnet":
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"{value!r}: not a subnet (CIDR, e.g. 10.0.0.0/24)") from None
    if kind == "port":
        if not value.isdigit() or not 0 <= int(value) <= 65535:
            raise ValueError(f"{value!r}: not a port (0-65535)")
        return str(int(value))
    if "|" not in value:
        raise ValueError(f"{value!r}: not an incident signature (<source>|<behaviour>, e.g. 10.0.0.5|synflood/tcp)")
    return value
