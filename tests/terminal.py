"""Run the CLI on a real pseudo-terminal, the way people see it (rich draws differently there)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from conftest import subprocess_env

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def run_on_terminal(
    *args: str, cwd: Path, columns: int = 80, env: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """``python -m defstate ARGS`` with stdin, stdout and stderr on one pseudo-terminal of
    ``columns`` columns; returns the exit code and what was shown (escape codes removed)."""
    import pty

    primary, secondary = pty.openpty()
    extra = {"COLUMNS": str(columns), "LINES": "50", "TERM": "xterm", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "defstate", *args],
        cwd=cwd,
        env=subprocess_env(extra),
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        output += chunk
    code = process.wait(timeout=60)
    os.close(primary)
    return code, _ANSI.sub("", output.decode(errors="replace"))
