"""A defstate project as Dagster ``Definitions``, with its pin in Dagster's reconstruction
metadata."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import dagster as dg

from defstate.contrib.dagster._dagster_private import DagsterLoadContext, current_load_context
from defstate.contrib.dagster.rules import apply_rules
from defstate.contrib.dagster.translate import dagster_asset_checks, dagster_asset_spec
from defstate.errors import DefstateError
from defstate.loader.discovery import LoadProblem
from defstate.loader.load import LoadResult, load_defs
from defstate.loader.project import find_project_root
from defstate.state_storage.state_info import StateInfo
from defstate.text import plural

logger = logging.getLogger("defstate.contrib.dagster")

# Reconstruction metadata key of one project's pin: "defstate/pin[<name>]".
PIN_METADATA_PREFIX = "defstate/pin"


class DagsterDefinitionsError(DefstateError):
    """The project cannot become Dagster definitions: one line per problem, with file:line."""

    def __init__(self, root: Path, errors: list[LoadProblem]) -> None:
        lines = "\n".join(f"  {error.relative_to(root)}" for error in errors)
        super().__init__(
            f"defstate project {root}: {plural(len(errors), 'problem')} before Dagster can "
            f"load it:\n"
            f"{lines}"
        )
        self.errors = errors


def pin_metadata_key(name: str) -> str:
    return f"{PIN_METADATA_PREFIX}[{name}]"


def build_dagster_definitions(
    project_root: Path | str | None = None,
    *,
    normalize: bool = False,
    strict: bool | None = None,
    pin_name: str | None = None,
) -> dg.Definitions:
    """Load a defstate project and return it as Dagster ``Definitions``.

    ``project_root`` defaults to the project containing the calling file (walking up to a
    ``pyproject.toml`` with ``[tool.defstate]``), else the current folder's.

    - On a Dagster *initialization* load (the code server; ``dg list defs``; ``dagster dev``)
      this is a defstate initialization: under ``dagster dev`` / ``dg`` it refreshes
      ``refresh_if_dev`` keys once, and its pin is recorded in Dagster's reconstruction
      metadata under ``defstate/pin[<pin_name>]``.
    - On a *reconstruction* (run workers and every other process Dagster starts from that
      code location) it loads exactly the pinned versions: no refresh, no pointer read.

    ``normalize`` applies the rules of :mod:`defstate.contrib.dagster.rules` (logging one
    warning per change) instead of failing. ``strict`` is ``load_defs``'s (default:
    ``DEFSTATE_DEPLOY=1``). ``pin_name`` (default: the project folder's name) tells several
    projects in one code location apart. Any problem raises ``DagsterDefinitionsError``.
    """
    root = _project_root(project_root, sys._getframe(1).f_globals.get("__file__"))
    return build_for_load(
        root, current_load_context(), normalize=normalize, strict=strict, pin_name=pin_name
    )


def build_for_load(
    root: Path,
    context: DagsterLoadContext,
    *,
    normalize: bool = False,
    strict: bool | None = None,
    pin_name: str | None = None,
) -> dg.Definitions:
    """:func:`build_dagster_definitions` for one Dagster load ``context``."""
    name = pin_name or root.name
    key = pin_metadata_key(name)
    pinned = context.reconstruction_metadata.get(key) if context.reconstruction else None
    if pinned is not None:
        result = load_defs(root, state_info=StateInfo.from_json(pinned), strict=strict)
    else:
        if context.reconstruction:  # e.g. `dagster asset materialize -f`: nothing initialized
            logger.warning("no defstate pin in Dagster's reconstruction metadata: loading latest")
        result = load_defs(root, dev=context.dev and not context.reconstruction, strict=strict)
    definitions = _dagster_definitions(root, result, normalize, name)
    context.record(key, result.state_info.to_json())
    return definitions


def _project_root(project_root: Path | str | None, caller_file: str | None) -> Path:
    if project_root is not None:
        return Path(project_root).resolve()
    if caller_file:
        return find_project_root(Path(caller_file).resolve().parent)
    return find_project_root()


def _dagster_definitions(
    root: Path, result: LoadResult, normalize: bool, pin_name: str
) -> dg.Definitions:
    errors: list[LoadProblem] = []
    for error in result.errors:
        if error.kind == "refresh":  # the previous state was used: the load is still whole
            logger.warning("%s", error.relative_to(root))
        else:
            errors.append(error)
    ruled = apply_rules(result, normalize=normalize)
    for note in ruled.notes:
        logger.warning("%s (normalised)", note.relative_to(root))
    errors.extend(ruled.problems)
    if errors:
        raise DagsterDefinitionsError(root, errors)
    return dg.Definitions(
        assets=[dagster_asset_spec(spec) for spec in ruled.assets],
        asset_checks=dagster_asset_checks(ruled.asset_checks, _op_name(pin_name)),
    )


def _op_name(pin_name: str) -> str:
    return "defstate_checks__" + re.sub(r"[^A-Za-z0-9_]", "_", pin_name)
