"""Entry point of a defstate PEX: the ``defstate`` command, run on the project baked inside.

``build.py`` puts this file at the root of the PEX next to ``defstate_project/`` (the
project's ``pyproject.toml`` and packages, with their ``.local_defs_state/``). Inside a PEX
that folder is a real directory under ``$PEX_ROOT`` whose location is known only at run time,
so the project is found relative to this file. ``--project`` or ``DEFSTATE_PROJECT`` still win.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).parent / "defstate_project"


def main() -> None:
    """Run ``defstate`` with ``DEFSTATE_PROJECT`` defaulting to the baked project."""
    os.environ.setdefault("DEFSTATE_PROJECT", str(PROJECT_ROOT))
    from defstate.cli.main import main as defstate_main

    defstate_main()


if __name__ == "__main__":
    main()
