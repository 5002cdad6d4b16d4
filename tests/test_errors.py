"""The error tree: every exception defstate defines derives from DefstateError, and the
attributes callers read (exit codes, retryability) are on the classes."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import defstate
from defstate import errors
from defstate.errors import (
    DefstateError,
    RefreshTimeoutError,
    StateStorageError,
    TerminalRefreshError,
    UnknownStateKeyError,
    is_transient,
)

# Private control-flow exceptions that never leave their module.
_INTERNAL = {"defstate.components.attributes._Mismatch"}


def _defstate_exceptions() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(defstate.__path__, "defstate."):
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(value, BaseException)
                and not issubclass(value, Warning)  # warnings are not raised
                and value.__module__ == info.name
            ):
                found.append(value)
    return found


def test_every_exception_derives_from_defstate_error() -> None:
    classes = _defstate_exceptions()
    assert len(classes) > 20
    strays = [
        f"{c.__module__}.{c.__qualname__}"
        for c in classes
        if not issubclass(c, DefstateError) and f"{c.__module__}.{c.__qualname__}" not in _INTERNAL
    ]
    assert strays == []


def test_exit_codes_and_transience_are_class_attributes() -> None:
    assert DefstateError.exit_code == 1 and UnknownStateKeyError.exit_code == 2
    assert RefreshTimeoutError.transient and not TerminalRefreshError.transient
    # an instance may override its class: a storage error wrapping a network failure
    assert StateStorageError("x", transient=True).transient
    assert not StateStorageError("x").transient


@pytest.mark.parametrize(
    ("exc", "storage_call", "refresh"),
    [
        (ConnectionResetError("reset"), True, True),
        (TimeoutError("slow"), True, True),
        (OSError("unexplained"), True, True),
        (FileNotFoundError("gone"), False, True),
        (ValueError("bad"), False, True),
        (PermissionError("denied"), False, False),
        (StateStorageError("missing"), False, False),
        (RefreshTimeoutError("slow"), True, True),
    ],
)
def test_is_transient(exc: BaseException, storage_call: bool, refresh: bool) -> None:
    assert is_transient(exc) is storage_call
    assert is_transient(exc, unknown=True) is refresh


def test_foreign_types_are_matched_exactly_not_by_name() -> None:
    from botocore.exceptions import NoCredentialsError, ReadTimeoutError

    class ConnectionTimeoutCredentialError(Exception):  # a name proves nothing
        pass

    assert not is_transient(NoCredentialsError(), unknown=True)
    assert is_transient(ReadTimeoutError(endpoint_url="http://127.0.0.1:9"))
    assert not is_transient(ConnectionTimeoutCredentialError())
    assert errors.__doc__ is not None and "DefstateError" in errors.__doc__
