"""The YAML that README.md and docs/ show is valid YAML, so a reader can copy it.

Three kinds of example: fenced ```yaml blocks (read with the config loader), lines of them
commented out for the reader to switch on (``# state: {url: …}``), and inline code that
writes a flow mapping (`` `state: {url: …}` ``). The example lines commented out in the
templates `segship init` writes and in configs/ are checked too. A ``${…}`` reference inside
a ``{ }`` flow mapping must be quoted: unquoted, its braces end the mapping.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from segship.config.issues import ConfigIssue
from segship.config.loader import load_file

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
YAML_FILES = [*sorted((REPO / "core" / "segship" / "templates").glob("*.y*ml")), *sorted((REPO / "configs").glob("*.yaml"))]

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
#: a comment that is a line of YAML to switch on (``# url: ${env:…}``), not prose
COMMENTED_EXAMPLE = re.compile(r"^\s*#\s?(\s*[A-Za-z_][\w.-]*:(?:\s.*)?)$")
#: inline code writing a flow mapping: ``key: {…}``
INLINE_FLOW_MAPPING = re.compile(r"`([\w.-]+: \{[^`\n]*)`")


def _fenced(document: Path) -> list[tuple[int, str]]:
    """The ```yaml blocks of a Markdown file, with the line each starts on."""
    text = document.read_text(encoding="utf-8")
    return [(text[:match.start()].count("\n") + 2, match.group(2)) for match in FENCE.finditer(text)
            if match.group(1) in ("yaml", "yml")]


def _commented_examples(text: str) -> list[str]:
    return [match.group(1) for line in text.splitlines() if (match := COMMENTED_EXAMPLE.match(line))]


def _yaml_error(text: str) -> str | None:
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return str(exc)
    return None


BLOCKS = [pytest.param(text, id=f"{document.name}:{line}") for document in DOCUMENTS
          for line, text in _fenced(document)]


def test_the_documents_show_yaml_examples() -> None:
    assert len(BLOCKS) >= 10  # the pattern above still finds them


@pytest.mark.parametrize("text", BLOCKS)
def test_every_yaml_block_loads(text: str, tmp_path: Path) -> None:
    example = tmp_path / "example.yaml"
    example.write_text(text, encoding="utf-8")
    issues: list[ConfigIssue] = []
    load_file(example, issues)
    assert not issues, "\n".join(issue.as_text() for issue in issues)


@pytest.mark.parametrize("path", [*DOCUMENTS, *YAML_FILES], ids=lambda path: str(path.relative_to(REPO)))
def test_commented_out_examples_are_valid_once_switched_on(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    blocks = "\n".join(block for _, block in _fenced(path)) if path.suffix == ".md" else text
    broken = {line: error for line in _commented_examples(blocks) if (error := _yaml_error(line))}
    assert not broken, broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_inline_flow_mappings_are_valid_yaml(document: Path) -> None:
    prose = FENCE.sub("", document.read_text(encoding="utf-8"))
    broken = {span: error for span in INLINE_FLOW_MAPPING.findall(prose) if (error := _yaml_error(span))}
    assert not broken, broken


def test_the_checks_see_an_unquoted_reference_in_a_flow_mapping() -> None:
    assert _commented_examples("  # state: {url: ${env:URL}}  # shared\n# Prose, not YAML.") == [
        "state: {url: ${env:URL}}  # shared"]
    assert _yaml_error("state: {url: ${env:URL}}")
    assert not _yaml_error('state: {url: "${env:URL}"}')
    assert INLINE_FLOW_MAPPING.findall("set `state: {url: ${env:URL}}` there") == ["state: {url: ${env:URL}}"]
