"""One Prefect test server for the whole test session (starting one costs ~10 s; flows need an API).

Import the fixture in tests/conftest.py (``from tests.prefect_fixtures import prefect_harness  # noqa: F401``)
and request it by name. Inside it, ``prefect.settings.PREFECT_API_URL.value()`` is the harness server's API
URL; pass it as the PREFECT_API_URL environment variable to subprocesses that should run against it.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server and SQLite database shared by every test of the session; yields its API URL."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.5")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()
