"""Shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so this imports as ``common``)."""

from __future__ import annotations

from pathlib import Path


def emit(text: str, out: Path | None) -> None:
    """Print a results section and, with ``out``, append it to that Markdown file."""
    print(text)
    if out:
        with out.open("a") as fh:
            fh.write(text + "\n")
