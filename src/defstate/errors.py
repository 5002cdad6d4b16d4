"""Errors raised by defstate.

Every error that reaches a user says *where* (file and line when there is one) and *what*.
"""

from __future__ import annotations

from pathlib import Path

import attrs


@attrs.frozen
class SourceLocation:
    """A place in a project file: ``path:line`` (line is 1-based, 0 when unknown)."""

    path: Path
    line: int = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else str(self.path)


class DefstateError(Exception):
    """Base class of every error defstate raises on purpose.

    ``location`` is the file (and line) the problem is in, when there is one; ``str(error)``
    starts with it so a one-line report points at the place to fix.
    """

    def __init__(self, message: str, location: SourceLocation | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ProjectConfigError(DefstateError):
    """``pyproject.toml`` is missing, unreadable or has an invalid ``[tool.defstate]`` table."""


class DefsYamlError(DefstateError):
    """A ``defs.yaml`` file is invalid: YAML syntax, templates, type or attributes."""


class DuplicateAssetError(DefstateError):
    """Two components define the same asset key."""


class AssetCheckError(DefstateError):
    """An asset check is defined twice, or targets an asset no component defines."""


class StateStorageError(DefstateError):
    """State could not be read from or written to its storage."""


class StateIntegrityError(StateStorageError):
    """Stored state does not match its recorded size or sha256."""


class UnknownStateKeyError(DefstateError):
    """A state key was asked for that no component of the project uses."""

    exit_code = 2


class TerminalRefreshError(Exception):
    """Raise from ``write_state_to_path`` for a failure that retrying cannot fix."""
