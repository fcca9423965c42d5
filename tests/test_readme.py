"""The README documents every schema column exactly as the schema module declares it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowhawk.extractors.schema import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_schema_table_matches_schema_module():
    text = README.read_text()
    block = re.search(r"<!-- schema-table:start -->\n(.*)\n<!-- schema-table:end -->", text, flags=re.S)
    assert block, "README lacks the schema table markers"
    assert block.group(1) == markdown_table(), "README schema table is stale: regenerate from extractors.schema"


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    command = ci.strip().splitlines()[-1]
    assert command in README.read_text()


def test_readme_report_schema_matches_reports_module():
    from flowhawk.reports.scored import schema_markdown

    text = README.read_text()
    block = re.search(r"<!-- report-schema:start -->\n(.*)\n<!-- report-schema:end -->", text, flags=re.S)
    assert block and block.group(1).strip() == schema_markdown().strip()


@pytest.mark.parametrize("marker,module", [("incidents-schema", "incidents"), ("hosts-schema", "hosts"),
                                           ("alerts-schema", "alerts")])
def test_readme_analyst_schemas_match_modules(marker, module):
    import importlib

    text = README.read_text()
    block = re.search(rf"<!-- {marker}:start -->\n(.*)\n<!-- {marker}:end -->", text, flags=re.S)
    expected = importlib.import_module(f"flowhawk.reports.{module}").schema_markdown()
    assert block and block.group(1).strip() == expected.strip(), f"README {marker} is stale"
def test_every_test_the_guarantees_section_names_exists():
    text = README.read_text()
    section = text[text.index("## What flowhawk guarantees"):]
    section = section[: section.index("\n## ", 1)]
    named, current = [], None
    for file, test in re.findall(r"`(test_\w+\.py)?(?:::)?(test_\w+)?", section):
        current = file or current
        if test:
            named.append((current, test))
    assert len(named) >= 15
    for file, test in named:
        source = (README.parent / "tests" / file).read_text()
        assert f"def {test}(" in source, f"README names {file}::{test}, which does not exist"
