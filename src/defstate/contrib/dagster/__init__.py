"""defstate projects as Dagster code locations (``pip install 'defstate[dagster]'``).

A two-line ``definitions.py`` makes a defstate project a code location::

    from defstate.contrib.dagster import build_dagster_definitions

    defs = build_dagster_definitions()

and ``type: defstate.contrib.dagster.DefstateProjectComponent`` includes one in a dg project.
Dagster is imported only when one of those is used: :mod:`defstate.contrib.dagster.rules`
(what ``defstate check --dagster`` runs) works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from defstate.contrib.dagster.adapter import (
        DagsterDefinitionsError,
        build_dagster_definitions,
    )
    from defstate.contrib.dagster.component import DefstateProjectComponent

_LAZY = {
    "build_dagster_definitions": "defstate.contrib.dagster.adapter",
    "DagsterDefinitionsError": "defstate.contrib.dagster.adapter",
    "DefstateProjectComponent": "defstate.contrib.dagster.component",
}

__all__ = ["DagsterDefinitionsError", "DefstateProjectComponent", "build_dagster_definitions"]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'defstate.contrib.dagster' has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != "dagster":
            raise
        raise ImportError(
            f"defstate.contrib.dagster.{name} needs Dagster: pip install 'defstate[dagster]'"
        ) from None
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
