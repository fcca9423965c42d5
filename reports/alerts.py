"""``alerts.jsonl``: one JSON object per line, ECS field names, for a SIEM to ingest.

Schema: ``alert.schema.json`` beside this module (JSON Schema 2020-12, ``ALERT_SCHEMA_VERSION``). ECS fields:
``@timestamp``, ``event.kind`` = ``alert``, ``event.category`` = ``["network"]``, ``event.severity`` (1-4),
``event.reason``, ``event.risk_score`` (score x 100), ``event.id``, ``source.ip/port``, ``destination.ip/port``,
``network.transport``, ``network.iana_number``, ``network.community_id``, ``rule.name`` (the behaviour, e.g.
``synflood/tcp``), ``rule.category`` (the predicted class), ``rule.version`` (the model version). flowhawk's
own fields sit under ``flowhawk.*``: batch, incident id, flow index and file, score, model version, reason,
explanation, signature, flows / peers / ports counts, ground-truth class when the batch is labelled.

By default one alert per incident (its representative flow's addresses and ports); ``alerts_per="flow"``
gives one per anomalous flow. Alerts whose host, port, subnet or incident signature is allowlisted are not
written; the caller counts them as suppressed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources

import pandas as pd

from flowhawk.reports.incidents import PROTO_NAMES, SEVERITY_LABELS, behaviour_of

ALERT_SCHEMA_VERSION = 1
ALERTS_FILE = "alerts.jsonl"
ECS_VERSION = "8.11.0"


def alert_schema() -> dict:
    """The JSON Schema of one alert line (shipped in the package)."""
    return json.loads(resources.files("flowhawk.reports").joinpath("alert.schema.json").read_text("utf-8"))


def _iso(ms: object) -> str | None:
    if ms is None or pd.isna(ms):
        return None
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat().replace("+00:00", "Z")


def _opt_int(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _opt_str(value: object) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _record(*, alert_type: str, alert_id: str, start: object, end: object, src: object, sport: object, dst: object,
            dport: object, proto: object, cid: object, behaviour: str, cls: object, level: int, score: float,
            reason: object, explanation: object, model_version: str, batch_id: str, incident_id: object,
            flow_index: object, source_file: object, signature: str, counts: tuple[int, int, int],
            true_class: object) -> dict:
    proto_n = _opt_int(proto)
    reason_text = _opt_str(reason) or f"{_opt_str(cls) or 'anomaly'} score={score:.2f}"
    return {
        "@timestamp": _iso(start),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "alert", "category": ["network"], "type": ["connection"], "severity": int(level),
                  "reason": reason_text, "risk_score": round(100.0 * float(score), 3), "dataset": "flowhawk.alerts",
                  "id": alert_id, "start": _iso(start), "end": _iso(end)},
        "source": {"ip": _opt_str(src), "port": _opt_int(sport)},
        "destination": {"ip": _opt_str(dst), "port": _opt_int(dport)},
        "network": {"transport": PROTO_NAMES.get(proto_n) if proto_n is not None else None,
                    "iana_number": None if proto_n is None else str(proto_n), "community_id": _opt_str(cid)},
        "rule": {"name": behaviour, "category": _opt_str(cls) or "anomaly", "version": str(model_version)},
        "flowhawk": {"alert_schema_version": ALERT_SCHEMA_VERSION, "alert_type": alert_type, "batch_id": batch_id,
                     "incident_id": _opt_str(incident_id), "flow_index": _opt_int(flow_index),
                     "source_file": _opt_str(source_file), "score": float(score), "model_version": str(model_version),
                     "reason": reason_text, "explanation": json.loads(explanation) if _opt_str(explanation) else None,
                     "severity_label": SEVERITY_LABELS[int(level)], "signature": signature,
                     "flows": counts[0], "peers": counts[1], "ports": counts[2], "true_class": _opt_str(true_class)},
    }


def incident_alerts(incidents: pd.DataFrame, model_version: str) -> Iterator[dict]:
    """One alert per incident row (``incidents.INCIDENT_SCHEMA`` columns)."""
    for r in incidents.itertuples(index=False):
        yield _record(alert_type="incident", alert_id=r.incident_id, start=r.start_ms, end=r.end_ms, src=r.source,
                      sport=r.rep_src_port, dst=r.rep_dst_addr, dport=r.rep_dst_port, proto=r.protocol,
                      cid=r.rep_community_id, behaviour=r.behaviour, cls=r.predicted_class, level=r.severity,
                      score=r.max_score, reason=r.reason, explanation=r.explanation, model_version=model_version,
                      batch_id=r.batch_id, incident_id=r.incident_id, flow_index=r.rep_flow_index,
                      source_file=r.rep_source_file, signature=r.signature,
                      counts=(int(r.flows), int(r.peers), int(r.ports)), true_class=r.true_class)


def flow_alerts(frame: pd.DataFrame, incidents: pd.DataFrame, batch_id: str, model_version: str) -> Iterator[dict]:
    """One alert per anomalous flow of ``frame`` (scored columns plus ``incident_id``); severity and reason
    fall back to the flow's incident."""
    by_id = incidents.set_index("incident_id")
    flows = frame[frame["incident_id"].notna()]
    behaviours = behaviour_of(flows)
    for (pos, r), behaviour in zip(flows.iterrows(), behaviours, strict=True):
        inc = by_id.loc[r["incident_id"]]
        yield _record(alert_type="flow", alert_id=f"{batch_id}:{pos}", start=r["FLOW_START_MILLISECONDS"],
                      end=r["FLOW_END_MILLISECONDS"], src=r["IPV4_SRC_ADDR"], sport=r["L4_SRC_PORT"],
                      dst=r["IPV4_DST_ADDR"], dport=r["L4_DST_PORT"], proto=r["PROTOCOL"], cid=r.get("community_id"),
                      behaviour=behaviour, cls=r["predicted_class"], level=int(inc["severity"]), score=r["score"],
                      reason=_opt_str(r.get("reason")) or inc["reason"], explanation=r.get("explanation"),
                      model_version=model_version, batch_id=batch_id, incident_id=r["incident_id"],
                      flow_index=r.get("flow_index"), source_file=r.get("source_file"), signature=inc["signature"],
                      counts=(1, 1, 1), true_class=r.get("Attack"))


def alerts_jsonl(alerts: list[dict]) -> str:
    """The file content: one compact JSON object per line."""
    return "".join(json.dumps(a, sort_keys=True, allow_nan=False, separators=(",", ":")) + "\n" for a in alerts)


def schema_markdown() -> str:
    """Every alert field (dotted ECS path), its JSON type(s) and whether it is required, from the JSON schema."""
    schema = alert_schema()
    rows = ["| field | type | required |", "|---|---|---|"]

    def walk(node: dict, prefix: str, required: set[str]) -> None:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node
        for name, child in node.get("properties", {}).items():
            path = f"{prefix}{name}"
            resolved = schema["$defs"][child["$ref"].rsplit("/", 1)[1]] if "$ref" in child else child
            if resolved.get("type") == "object" and "properties" in resolved:
                walk(resolved, path + ".", set(resolved.get("required", [])))
                continue
            kind = resolved.get("type") or ("const " + json.dumps(resolved["const"]) if "const" in resolved
                                             else "one of " + ", ".join(resolved.get("enum", [])))
            kind = " or ".join(kind) if isinstance(kind, list) else kind
            rows.append(f"| `{path}` | {kind} | {'yes' if name in required else 'no'} |")

    walk(schema, "", set(schema["required"]))
    return "\n".join(rows)


def alert_digest(summary: dict) -> tuple[str, str]:
    """(subject, body) telling a SOC channel about a batch's alerts (for a notification block)."""
    subject = f"flowhawk: {summary.get('alerts', 0)} alert(s) in batch {summary.get('batch_id')}"
    lines = [f"batch {summary.get('batch_id')}: {summary.get('flows', 0):,} flows, "
             f"{summary.get('anomalies', 0):,} anomalous, {summary.get('alerts', 0)} alert(s) "
             f"(model {summary.get('model_version')})"]
    lines += [f"- {h['address']}: {h['anomalies']} anomalous of {h['flows']} flows"
              for h in (summary.get("top_sources") or [])[:5]]
    paths = summary.get("paths") or {}
    lines += [f"{name}: {paths[name]}" for name in ("alerts_jsonl", "report_html") if name in paths]
    return subject, "\n".join(lines)
