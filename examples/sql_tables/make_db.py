"""Create ``warehouse.db`` (SQLite) from ``warehouse.sql``: ``python make_db.py [OUTPUT]``.

The database stands in for a real warehouse, so it is built, not committed. An existing
file is replaced in one step: a reader never sees a half-built database.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_database(output: Path, script: Path = HERE / "warehouse.sql") -> Path:
    """Run ``script`` into a new SQLite database at ``output``; return ``output``."""
    pending = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    pending.unlink(missing_ok=True)
    connection = sqlite3.connect(pending)
    try:
        connection.executescript(script.read_text(encoding="utf-8"))
        connection.commit()
    finally:
        connection.close()
    os.replace(pending, output)
    return output


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "warehouse.db"
    print(f"created {make_database(target)}")
