"""What a component is told about the load it is part of."""

from __future__ import annotations

from pathlib import Path

import attrs


@attrs.frozen
class ComponentLoadContext:
    """The project and the ``defs.yaml`` a component instance comes from.

    ``source`` is the instance's label, ``<defs.yaml path relative to the project>:<line>``.
    ``state_path`` is the state the loader resolved for a state-backed component (``None``
    when there is none yet, and for plain components).
    """

    project_root: Path
    defs_dir: Path
    component_dir: Path
    source: str
    state_path: Path | None = None

    def resolve_path(self, path: str | Path) -> Path:
        """``path`` made absolute: relative paths are relative to the project root."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.project_root / candidate
