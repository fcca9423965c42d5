"""Optional alert delivery: a real Prefect notification block (custom webhook) posts a batch's alert digest to a
real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from flowhawk.flows.params import InboxOptions
from flowhawk.flows.tasks import notify_alerts
from flowhawk.reports.alerts import alert_digest

SUMMARY = {"batch_id": "c-1", "flows": 1200, "anomalies": 40, "alerts": 2, "model_version": "v0001",
           "top_sources": [{"address": "10.0.0.66", "anomalies": 40, "flows": 41}],
           "paths": {"report_html": "/lake/reports/batch=c-1/report.html"}}


def test_digest_names_the_batch_the_alerts_and_the_hosts():
    subject, body = alert_digest(SUMMARY)
    assert subject == "flowhawk: 2 alert(s) in batch c-1"
    assert "10.0.0.66: 40 anomalous of 41 flows" in body and "report.html" in body
    assert InboxOptions().notify_block is None  # delivery is off by default


def test_webhook_block_receives_the_digest(prefect_harness):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        CustomWebhookNotificationBlock(name="soc", url=f"http://127.0.0.1:{server.server_port}/hook",
                                       json_data={"subject": "{{subject}}", "text": "{{body}}"}).save(
            "soc", overwrite=True)
        notify_alerts.fn("custom-webhook/soc", SUMMARY)
        thread.join(timeout=30)
    finally:
        server.server_close()
    assert received and received[0]["subject"] == "flowhawk: 2 alert(s) in batch c-1"
    assert "10.0.0.66" in received[0]["text"]
