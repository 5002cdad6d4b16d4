"""Every document the code refers to exists: a docstring or message naming ``docs/x.md`` (or
a bare ``x.md``) points at a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.md)\b")


def doc_references(root: Path = REPO / "src") -> dict[str, list[str]]:
    """``{document: [file:line, ...]}`` for every ``*.md`` named under ``root``."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".py", ".js", ".html", ".css") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for name in REFERENCE.findall(line):
                found.setdefault(name, []).append(f"{path.relative_to(root)}:{number}")
    return found


def _exists(name: str) -> bool:
    if "/" in name:
        return (REPO / name).is_file()
    return (REPO / name).is_file() or (REPO / "docs" / name).is_file()


def test_every_document_the_code_names_exists() -> None:
    references = doc_references()
    assert "docs/architecture.md" in references  # the scan finds what is there
    missing = {name: places for name, places in references.items() if not _exists(name)}
    assert missing == {}


def test_a_missing_document_is_found(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text('"""See DESIGN.md and docs/reliability.md."""\n')
    assert sorted(doc_references(tmp_path)) == ["DESIGN.md", "docs/reliability.md"]
    assert not _exists("DESIGN.md") and _exists("docs/reliability.md")
