"""Errors raised by defstate: one tree, and what each branch means for retries and exit codes.

Every error that reaches a user says *where* (file and line when there is one) and *what*.
Two class attributes say what a caller does with it, so no caller inspects names or types:

* ``exit_code``: what the ``defstate`` CLI exits with (0 ok, 1 failure, 2 usage error or
  unknown key, 130 interrupted: ``KeyboardInterrupt`` is not a defstate error).
* ``transient``: whether the same call could succeed later (retries ask :func:`is_transient`).
  An instance may say otherwise (``StateStorageError(..., transient=True)`` wraps a network
  failure that outlived the storage's own retries).

The tree (``*`` transient; ``[2]`` exit code 2; ``+ builtin`` keeps the builtin base that
callers used to catch)::

    DefstateError                         exit 1, not transient
    ├── UsageError                        [2] a command asked for something that is not there
    │   ├── UnknownStateKeyError          [2] no component of the project uses that key
    │   └── selection.SelectionSyntaxError [2] an asset selection that does not parse
    ├── ProjectError                      the project's own files are wrong
    │   ├── ProjectConfigError            pyproject.toml / [tool.defstate]
    │   ├── DefsYamlError                 a defs.yaml: YAML, type, attributes
    │   │   └── TemplateError             + ValueError: a {{ }} that cannot be expanded
    │   ├── ComponentTypeError            + LookupError: type: names no component class
    │   ├── AttributeValueError           + ValueError: an attribute value does not fit
    │   ├── DuplicateAssetError           two components define one asset key
    │   └── AssetCheckError               a check defined twice, or of an unknown asset
    ├── StateStorageError                 state could not be read or written (*when wrapping
    │   │                                 a network failure)
    │   ├── InvalidStateKeyError          + ValueError: a key that cannot be stored
    │   ├── StateIntegrityError           stored bytes do not match their size or sha256
    │   ├── calls.StorageDeadlineError    * a storage call ran past its deadline
    │   ├── StateVersionMissingError      a version's bytes are gone (collected by gc)
    │   └── AlreadyRefreshingError        another process holds the key's refresh (--no-wait)
    ├── RefreshError                      a refresh ran and did not publish
    │   ├── RefreshTimeoutError           * write_state_to_path ran past its timeout
    │   ├── RefreshRejectedError          the guard refused the new state
    │   └── TerminalRefreshError          raised by components: retrying cannot fix it
    ├── retrying.DeadlineExpired          * the one retry loop's deadline passed
    ├── ComponentStateError               + ValueError: stored state a component cannot read
    └── WorkerError                       a worker process failed to produce a load

Components' own errors extend these branches (``contrib.http.HttpRequestError`` is a
``RefreshError`` whose instances are transient for 5xx/429/timeouts, ``contrib.dbt.DbtParseError``
a ``TerminalRefreshError``, ``contrib.*StateError`` are ``ComponentStateError``).

Exceptions from other libraries (botocore, aiohttp, a component's own code) are classified by
:func:`is_transient` from their exact types, never from substrings of their names.
"""

from __future__ import annotations

import errno
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
    starts with it so a one-line report points at the place to fix. ``transient`` overrides
    the class's default for this one error.
    """

    exit_code: int = 1
    transient: bool = False

    def __init__(
        self,
        message: str,
        location: SourceLocation | None = None,
        *,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        if transient is not None:
            self.transient = transient

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class UsageError(DefstateError):
    """A command or call asked for something that does not exist (exit code 2)."""

    exit_code = 2


class UnknownStateKeyError(UsageError):
    """A state key was asked for that no component of the project uses."""


class ProjectError(DefstateError):
    """The project's own files (``pyproject.toml``, ``defs.yaml``, components) are wrong."""


class ProjectConfigError(ProjectError):
    """``pyproject.toml`` is missing, unreadable or has an invalid ``[tool.defstate]`` table."""


class DefsYamlError(ProjectError):
    """A ``defs.yaml`` file is invalid: YAML syntax, templates, type or attributes."""


class TemplateError(DefsYamlError, ValueError):
    """``{{ }}`` templates that cannot be expanded (unknown expression, unset variable);
    ``problems`` lists each one (every unset variable is reported, not only the first)."""

    def __init__(
        self,
        message: str,
        location: SourceLocation | None = None,
        *,
        problems: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, location)
        self.problems = problems or (message,)


class ComponentTypeError(ProjectError, LookupError):
    """A ``type:`` that does not name an importable component class."""


class AttributeValueError(ProjectError, ValueError):
    """An attribute value does not fit its field; ``path`` is the dotted field path."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


class DuplicateAssetError(ProjectError):
    """Two components define the same asset key."""


class AssetCheckError(ProjectError):
    """An asset check is defined twice, or targets an asset no component defines."""


class StateStorageError(DefstateError):
    """State could not be read from or written to its storage."""


class InvalidStateKeyError(StateStorageError, ValueError):
    """A state key that cannot be stored: empty, not a string, not valid Unicode, too long."""


class StateIntegrityError(StateStorageError):
    """Stored state does not match its recorded size or sha256."""


class StateVersionMissingError(StateStorageError):
    """A stored version's bytes are gone: collected by ``state gc`` (or deleted) after a
    reader chose it. A load of the latest version reads the pointer again."""


class AlreadyRefreshingError(StateStorageError):
    """Another process is refreshing this key right now (``--no-wait``)."""


class RefreshError(DefstateError):
    """A refresh ran and published nothing; the previous state stays."""


class RefreshTimeoutError(RefreshError):
    """``write_state_to_path`` ran past the refresh's timeout; nothing was published."""

    transient = True


class RefreshRejectedError(RefreshError):
    """The guard refused to publish a refresh (too many assets would disappear)."""


class TerminalRefreshError(RefreshError):
    """Raise from ``write_state_to_path`` for a failure that retrying cannot fix."""


class ComponentStateError(DefstateError, ValueError):
    """Stored state that a component cannot read (corrupt, or from an incompatible version)."""


class WorkerError(DefstateError):
    """A worker process failed to produce a load."""


# Foreign exception types by exact ``module.QualName`` (matched along the MRO), so that
# classifying them imports nothing: botocore, aiohttp and google-auth stay unloaded.
_DENIED_TYPES = frozenset(
    {
        "botocore.exceptions.NoCredentialsError",
        "botocore.exceptions.PartialCredentialsError",
        "botocore.exceptions.CredentialRetrievalError",
        "botocore.exceptions.NoAuthTokenError",
        "google.auth.exceptions.DefaultCredentialsError",
    }
)
_NETWORK_TYPES = frozenset(
    {
        "botocore.exceptions.ConnectionError",  # EndpointConnectionError, ConnectTimeoutError
        "botocore.exceptions.HTTPClientError",  # ReadTimeoutError, ConnectionClosedError
        "aiohttp.client_exceptions.ClientConnectionError",
        "aiohttp.client_exceptions.ClientPayloadError",
        "google.auth.exceptions.TransportError",
        "requests.exceptions.ConnectionError",
        "requests.exceptions.Timeout",
        "urllib3.exceptions.ProtocolError",
        "urllib3.exceptions.TimeoutError",
    }
)


_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def _is_one_of(exc: BaseException, names: frozenset[str]) -> bool:
    return any(f"{cls.__module__}.{cls.__qualname__}" in names for cls in type(exc).__mro__)


def is_transient(exc: BaseException, *, unknown: bool = False) -> bool:
    """Whether the call that raised ``exc`` could succeed if made again.

    A defstate error (or any exception with a boolean ``transient`` attribute) says so
    itself; denied access and missing credentials never are; connection failures, timeouts
    and a bare ``OSError`` (what s3fs makes of an unexplained failure) are. Anything else is
    ``unknown``: a storage call is not retried on it, a component's refresh is (its retry
    policy decides how often).
    """
    flag = getattr(exc, "transient", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(exc, PermissionError) or _is_one_of(exc, _DENIED_TYPES):
        return False
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        return False  # a full, over-quota or read-only disk fails the same way again
    if isinstance(exc, (ConnectionError, TimeoutError)) or _is_one_of(exc, _NETWORK_TYPES):
        return True
    return type(exc) is OSError or unknown
