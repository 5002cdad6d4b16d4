"""No function in ``src/`` is longer than about 60 lines (one concern per step).

Run it as a script to list the longest functions: ``python tests/test_function_length.py
[LIMIT]`` prints every function over LIMIT lines (default 60), longest first.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SOURCES = Path(__file__).resolve().parent.parent / "src"
LIMIT = 60  # lines from ``def`` to the last line of the body, docstring included


def long_functions(limit: int = LIMIT, root: Path = SOURCES) -> list[tuple[int, str]]:
    """``(lines, "path:line name")`` of every function longer than ``limit``, longest first."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > limit:
                    where = f"{path.relative_to(root)}:{node.lineno} {node.name}"
                    found.append((lines, where))
    return sorted(found, reverse=True)


def test_no_function_is_longer_than_the_limit() -> None:
    assert long_functions() == []


def test_the_scan_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "long.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert long_functions(root=tmp_path) == [(LIMIT + 1, "long.py:5 long")]


if __name__ == "__main__":
    for lines, where in long_functions(int(sys.argv[1]) if len(sys.argv) > 1 else LIMIT):
        print(f"{lines:4d}  {where}")
