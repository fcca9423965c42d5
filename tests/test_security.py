"""Security review checks (issue 11): no pickle or eval of data, JSON-only persisted Prefect results, loopback
binds, and names from the inbox never steering writes (see benchmarks/results/robustness.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowhawk.lake.inbox import Inbox, InboxConfig

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("extractors", "lake", "model", "reports", "flows", "cli", "common", "benchmarks", "docker")
DANGEROUS = re.compile(r"pickle\.loads?\(|cloudpickle|(?<![.\w])eval\(|(?<![.\w])exec\(|yaml\.load\(|"
                       r"allow_pickle\s*=\s*True|torch\.load\(|read_pickle\(|marshal\.loads?\(|shelve\.|shell=True")


def test_no_pickle_eval_or_shell_on_data_in_the_sources():
    hits = []
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if DANGEROUS.search(line.split("#", 1)[0]):
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits


def test_prefect_tasks_persist_results_only_as_json():
    from prefect import Task

    from flowhawk.flows import tasks

    found = [t for t in vars(tasks).values() if isinstance(t, Task)]
    assert len(found) > 10
    persisted = {t.name: t.result_serializer for t in found if t.persist_result is not False}
    assert persisted == {"ingest-file": "json"}


def test_flows_do_not_ask_for_persisted_results():
    """Flow results are not persisted, and if a profile turns persistence on (PREFECT_RESULTS_PERSIST_BY_DEFAULT)
    they are written as JSON, never with Prefect's default pickle serializer; see the review."""
    from prefect import Flow

    from flowhawk.flows import backfill_flow, ingest_flow, model_flows, score_flow
    from flowhawk.flows.inbox_flow import process_inbox

    modules = (backfill_flow, ingest_flow, model_flows, score_flow)
    flows = [f for m in modules for f in vars(m).values() if isinstance(f, Flow)]
    assert len(flows) >= 5
    for flow in [*flows, process_inbox]:
        assert flow.persist_result is not True, flow.name
        assert flow.result_serializer == "json", flow.name


def test_prefect_server_and_compose_bind_loopback_by_default():
    from prefect.settings import PREFECT_SERVER_API_HOST

    assert PREFECT_SERVER_API_HOST.value() in ("127.0.0.1", "localhost")
    compose = (ROOT / "docker" / "compose.yaml").read_text()
    assert '"${FLOWHAWK_BIND:-127.0.0.1}:' in compose
    cli = "\n".join(p.read_text() for p in (ROOT / "cli").glob("*.py"))
    assert "0.0.0.0" not in cli and "webserver=True" not in cli


def test_a_foreign_folder_in_processing_is_not_resumed(tmp_path):
    """A folder under processing/ that no run made (its name would become a report folder) is left alone."""
    inbox_dir = tmp_path / "inbox"
    foreign = inbox_dir / "processing" / "..evil name"
    foreign.mkdir(parents=True)
    (foreign / "x.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 20)
    inbox = Inbox(InboxConfig(root=inbox_dir, settle_seconds=0))
    assert inbox.claim() == [] and (foreign / "x.pcap").exists()


def test_inbox_refuses_to_write_through_a_linked_done_or_quarantine_folder(tmp_path):
    from flowhawk.lake.inbox import InboxError

    inbox_dir, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox_dir.mkdir()
    elsewhere.mkdir()
    (inbox_dir / "done").symlink_to(elsewhere)
    (inbox_dir / "x.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 20)
    inbox = Inbox(InboxConfig(root=inbox_dir, settle_seconds=0))
    with pytest.raises(InboxError, match="done: is a symbolic link"):
        inbox.claim()
    assert (inbox_dir / "x.pcap").exists() and not any(elsewhere.iterdir())
