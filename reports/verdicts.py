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

from flowhawk.common.files import atomic_write_json
from flowhawk.common.objectstore import Mirror

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
        name = f"{now.strftime('%Y%m%dT%H%M%S%f')}-{entry['id']}.json"
        atomic_write_json(self.directory / name, entry)
        if (mirror := Mirror.of(self.directory)) is not None:  # object-store lake: one object per entry
            mirror.push_file(name)
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
        if (mirror := Mirror.of(self.directory)) is not None:  # entries never change: fetch the new ones
            for entry in mirror.store.list():
                if "/" not in entry.rel and not (self.directory / entry.rel).is_file():
                    mirror.pull_file(entry.rel)
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
