"""The real thing, in a real browser: `prefect server start`, `flowhawk demo` against it, `flowhawk serve` running
the scheduled deployment, and the Prefect UI (headless Chromium) showing the runs and the batch artifacts.

Screenshots go to out/e2e/ (gitignored). Skipped when Debian's ``chromium`` is not installed
(``apt-get update && apt-get install -y chromium``; .ci/run installs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "e2e"
pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--virtual-time-budget=15000", "--window-size=1400,1000"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, body: dict | None = None) -> object:
    """One REST call; 503/429 (the server's SQLite busy with a concurrent writer) are retried, as Prefect's own
    client does."""
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(10):
        req = urllib.request.Request(f"{base}{path}", data=data, headers={"content-type": "application/json"},
                                     method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503) or attempt == 9:
                raise
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


def _wait(what: str, check, timeout: float = 180.0, proc: subprocess.Popen | None = None) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _page_text(chromium: str, url: str, screenshot: Path, expect: list[str], attempts: int = 3) -> str:
    """The rendered DOM of ``url`` as text (scripts and tags stripped), and a screenshot. The UI renders
    asynchronously and the machine may be loaded: the page is loaded again (up to ``attempts`` times) until
    every ``expect`` string is in it."""
    for _ in range(attempts):
        dom = subprocess.run([chromium, *CHROMIUM_FLAGS, "--dump-dom", url], capture_output=True, text=True,
                             timeout=120).stdout
        text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))
        if all(e in text for e in expect):
            break
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
    return text


@pytest.fixture
def server(tmp_path):
    """`prefect server start` on a free loopback port; yields its base URL."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_UI_API_URL=f"{base}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        _wait("the Prefect server", lambda: _api(base, "/api/health"), proc=proc)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_demo_and_served_deployment_show_in_the_prefect_ui(server, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get update && apt-get install -y chromium)")
    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_API_URL": f"{server}/api", "PYTHONPATH": str(ROOT)}
    work = tmp_path / "demo"
    demo = subprocess.run([sys.executable, "-m", "flowhawk.cli", "demo", "--workdir", str(work), "--packets", "3000",
                           "--epochs", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    (first,) = [p.name.split("=", 1)[1] for p in (work / "lake" / "reports").glob("batch=*")]

    # `flowhawk serve`: the deployments register; a run of the scheduled one reports a second capture
    from flowhawk.extractors.synth import SynthConfig, synthesize

    synthesize(SynthConfig(seed=99, packets=1500, duration_s=60.0), work / "inbox" / ".late.pcap",
               work / "inbox" / "late.labels.csv")
    os.replace(work / "inbox" / ".late.pcap", work / "inbox" / "late.pcap")
    serve = subprocess.Popen([sys.executable, "-m", "flowhawk.cli", "serve", "--inbox", str(work / "inbox"),
                              "--lake", str(work / "lake"), "--models", str(work / "models")], cwd=ROOT, env=env,
                             stdout=(tmp_path / "serve.log").open("w"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        deployments = _wait("served deployments", lambda: [d for d in _api(server, "/api/deployments/filter", {})
                                                            if d["name"] == "scheduled"], proc=serve)
        assert deployments[0]["schedules"][0]["schedule"]["cron"] == "*/5 * * * *"
        run = _api(server, f"/api/deployments/{deployments[0]['id']}/create_flow_run", {})
        state = _wait("the served run", lambda: _final(_api(server, f"/api/flow_runs/{run['id']}")), timeout=300,
                      proc=serve)
        assert state == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
    second = [p.name.split("=", 1)[1] for p in (work / "lake" / "reports").glob("batch=*")]
    assert len(second) == 2

    runs = _api(server, "/api/flow_runs/filter", {"flows": {"name": {"any_": ["process-inbox"]}}})
    demo_run = next(r for r in runs if r["deployment_id"] is None)
    expect = [demo_run["name"], "Completed", "process-inbox"]
    text = _page_text(chromium, f"{server}/runs/flow-run/{demo_run['id']}", OUT / "flow-run.png", expect)
    assert all(e in text for e in expect), text

    keys = [f"top-anomalies-{first}", f"batch-summary-{first}", "model-metrics-v0001"]
    text = _page_text(chromium, f"{server}/artifacts", OUT / "artifacts.png", keys)
    assert all(k in text for k in keys), f"artifacts not all listed in the UI: {text}"
    (table,) = _api(server, "/api/artifacts/filter", {"artifacts": {"key": {"any_": [f"top-anomalies-{first}"]}}})
    rows = json.loads(table["data"])
    expect = [rows[0]["IPV4_SRC_ADDR"], f"{rows[0]['score']}"[:6]]
    text = _page_text(chromium, f"{server}/artifacts/artifact/{table['id']}", OUT / "top-anomalies.png", expect)
    assert all(e in text for e in expect), text

    text = _page_text(chromium, f"{server}/deployments", OUT / "deployments.png", ["process-inbox", "scheduled"])
    assert "process-inbox" in text and "scheduled" in text, text
    assert (OUT / "flow-run.png").stat().st_size > 10_000


def _final(run: dict) -> str | None:
    state = run.get("state") or {}
    return state.get("type") if state.get("type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None
