"""Dagster's rules for asset specs, checked (and optionally applied) before Dagster sees them.

defstate accepts more than Dagster does: an owner ``team-ingest``, a group ``my-group``, a tag
value with spaces. Dagster rejects those with a stack trace from deep inside its definitions
code, far from the ``defs.yaml`` that caused them. These rules mirror Dagster 1.13's (see
``dagster._core.definitions.utils`` and ``dagster._utils.tags``) in plain Python, so that
``defstate check --dagster`` works without Dagster installed and every violation names the
component's ``file:line``.

Normalisation (``normalize=True`` in the adapter), one documented rule per field:

- owner: neither an email address nor ``team:NAME`` -> ``team:<owner>``; an empty ``team:``
  is dropped;
- group: every run of characters outside ``[A-Za-z0-9_]`` in a ``/``-separated segment
  becomes ``_``; empty segments are removed; nothing left -> no group (Dagster's default);
- tags: a tag whose key or value Dagster rejects is dropped (as dagster-dbt does);
- kinds: more than 10 -> the first 10 in sorted order are kept;
- deps: an asset listed as its own dependency is removed from its deps;
- metadata: a ``dagster/`` entry of the wrong shape (``dagster/column_schema``,
  ``dagster/row_count``, ``dagster/table_name``) is dropped;
- asset check name: every run of characters outside ``[A-Za-z0-9_]`` becomes ``_``;
- asset check additional deps: the checked asset itself is removed.

This module never imports Dagster.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from defstate.definitions import AssetCheckSpec, AssetSpec
from defstate.loader.discovery import LoadProblem

if TYPE_CHECKING:
    from defstate.components.component import Component
    from defstate.loader.discovery import ComponentInstance
    from defstate.loader.load import LoadResult

MAX_KINDS = 10
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,7}\b")
_NAME_SEGMENT = r"[A-Za-z0-9_]+"
_GROUP = re.compile(rf"^{_NAME_SEGMENT}(/{_NAME_SEGMENT})*$")
_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]+")
_TAG_KEY = re.compile(r"^([A-Za-z0-9_.-]{1,63}/|dagster/kind/)?[A-Za-z0-9_.-]{1,63}$")
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
OWNER_RULE = "an owner must be an email address or 'team:NAME'"
GROUP_RULE = "a group name must be segments of [A-Za-z0-9_] separated by '/'"
TAG_KEY_RULE = (
    "a tag key must be [A-Za-z0-9_.-], at most 63 characters, with at most one "
    "'namespace/' prefix of the same characters"
)
TAG_VALUE_RULE = "a tag value must be [A-Za-z0-9_.-], at most 63 characters"
CHECK_NAME_RULE = "an asset check name must be [A-Za-z0-9_]"


def is_valid_owner(owner: str) -> bool:
    return bool(_EMAIL.fullmatch(owner)) or (owner.startswith("team:") and len(owner) > 5)


def is_valid_group(group: str) -> bool:
    return bool(_GROUP.match(group))


def is_valid_tag(key: str, value: str) -> bool:
    return bool(_TAG_KEY.match(key)) and bool(_TAG_VALUE.match(value))


def _column_schema_problem(value: Any) -> str | None:
    if not isinstance(value, Mapping) or not isinstance(value.get("columns"), list):
        return 'must be {"columns": [{"name": ..., "type": ...}, ...]}'
    for column in value["columns"]:
        if not isinstance(column, Mapping) or not isinstance(column.get("name"), str):
            return "every column needs a string 'name'"
        for field in ("type", "description"):
            if column.get(field) is not None and not isinstance(column[field], str):
                return f"column {column['name']!r}: {field} must be a string"
    return None


def _row_count_problem(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return None if ok else "must be an integer"


def _table_name_problem(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


# The typed metadata entries of Dagster's TableMetadataSet that defstate components write.
_TYPED_METADATA: dict[str, Callable[[Any], str | None]] = {
    "dagster/column_schema": _column_schema_problem,
    "dagster/row_count": _row_count_problem,
    "dagster/table_name": _table_name_problem,
}


def spec_violations(spec: AssetSpec) -> list[str]:
    """Every Dagster rule ``spec`` breaks, one message each (empty: Dagster accepts it)."""
    problems = [
        f"owner {owner!r} is not valid in Dagster: {OWNER_RULE}"
        for owner in spec.owners
        if not is_valid_owner(owner)
    ]
    if spec.group_name is not None and not is_valid_group(spec.group_name):
        problems.append(f"group {spec.group_name!r} is not valid in Dagster: {GROUP_RULE}")
    for key, value in spec.tags.items():
        if not _TAG_KEY.match(key):
            problems.append(f"tag key {key!r} is not valid in Dagster: {TAG_KEY_RULE}")
        elif not _TAG_VALUE.match(value):
            problems.append(
                f"tag {key!r} has a value Dagster rejects ({value!r}): {TAG_VALUE_RULE}"
            )
    if len(spec.kinds) > MAX_KINDS:
        problems.append(f"{len(spec.kinds)} kinds: Dagster allows at most {MAX_KINDS}")
    if spec.key in spec.deps:
        problems.append("depends on itself, which Dagster rejects")
    for name, problem in _typed_metadata_problems(spec.metadata).items():
        problems.append(f"metadata {name!r} {problem} (Dagster's table metadata)")
    return problems


def _typed_metadata_problems(metadata: Mapping[str, Any]) -> dict[str, str]:
    problems = {}
    for name, check in _TYPED_METADATA.items():
        if name in metadata:
            problem = check(metadata[name])
            if problem is not None:
                problems[name] = problem
    return problems


def check_violations(check: AssetCheckSpec) -> list[str]:
    """Every Dagster rule the asset check ``check`` breaks, one message each."""
    problems = []
    if not _NAME.match(check.name):
        problems.append(f"name {check.name!r} is not valid in Dagster: {CHECK_NAME_RULE}")
    if check.asset in check.additional_deps:
        problems.append("lists the asset it checks as an additional dep, which Dagster rejects")
    return problems


def normalize_check(check: AssetCheckSpec) -> tuple[AssetCheckSpec, list[str]]:
    """``check`` changed by the documented rules, and one note per change."""
    notes = check_violations(check)
    if not notes:
        return check, []
    fixed = attrs.evolve(
        check,
        name=_NOT_NAME.sub("_", check.name),
        additional_deps=tuple(d for d in check.additional_deps if d != check.asset),
    )
    return fixed, notes


def normalize_group(group: str | None) -> str | None:
    """The group rule: invalid characters become ``_``, empty segments go."""
    if group is None or is_valid_group(group):
        return group
    segments = [_NOT_NAME.sub("_", segment) for segment in group.split("/")]
    return "/".join(s for s in segments if s) or None


def normalize_owner(owner: str) -> str | None:
    """The owner rule: an email or ``team:NAME`` stays; anything else becomes a team."""
    if is_valid_owner(owner):
        return owner
    if owner.startswith("team:"):
        return None  # an empty team name: nothing to keep
    return f"team:{owner}"


def normalize_spec(spec: AssetSpec) -> tuple[AssetSpec, list[str]]:
    """``spec`` changed by the documented rules, and one note per change."""
    notes = spec_violations(spec)
    if not notes:
        return spec, []
    owners = [o for o in (normalize_owner(owner) for owner in spec.owners) if o is not None]
    bad_metadata = _typed_metadata_problems(spec.metadata)
    fixed = attrs.evolve(
        spec,
        owners=tuple(dict.fromkeys(owners)),
        group_name=normalize_group(spec.group_name),
        tags={k: v for k, v in spec.tags.items() if is_valid_tag(k, v)},
        kinds=spec.kinds[:MAX_KINDS],
        deps=tuple(d for d in spec.deps if d != spec.key),
        metadata={k: v for k, v in spec.metadata.items() if k not in bad_metadata},
    )
    return fixed, notes


@attrs.frozen
class RuledDefinitions:
    """A load's assets and checks after Dagster's rules: ``problems`` break them (each at its
    component's ``defs.yaml`` entry); ``notes`` say what normalisation changed."""

    assets: list[AssetSpec]
    asset_checks: list[AssetCheckSpec]
    problems: list[LoadProblem]
    notes: list[LoadProblem]


def apply_rules(result: LoadResult, *, normalize: bool = False) -> RuledDefinitions:
    """Check every asset and check of ``result`` against Dagster's rules, first normalising
    them by the documented rules when ``normalize`` is set."""
    components = ComponentIndex(result)
    ruled = RuledDefinitions([], [], [], [])
    for spec in sorted(result.definitions.assets, key=lambda s: s.key):
        fixed, notes = normalize_spec(spec) if normalize else (spec, [])
        _record(ruled, components, spec, f"asset {spec.key}", notes, spec_violations(fixed))
        ruled.assets.append(fixed)
    for check in sorted(result.definitions.asset_checks, key=lambda c: c.key):
        fixed_check, notes = normalize_check(check) if normalize else (check, [])
        problems = check_violations(fixed_check)
        _record(ruled, components, check, f"asset check {check.key}", notes, problems)
        ruled.asset_checks.append(fixed_check)
    return ruled


def _record(
    ruled: RuledDefinitions,
    components: ComponentIndex,
    item: AssetSpec | AssetCheckSpec,
    label: str,
    notes: list[str],
    problems: list[str],
) -> None:
    if not notes and not problems:
        return
    ruled.notes.extend(components.problem(item, f"{label}: {note}") for note in notes)
    ruled.problems.extend(components.problem(item, f"{label}: {p}") for p in problems)


def rule_errors(result: LoadResult) -> list[LoadProblem]:
    """One ``LoadProblem`` per Dagster rule an asset or asset check of ``result`` breaks,
    located at the ``defs.yaml`` entry of the component that defined it."""
    return apply_rules(result).problems


class ComponentIndex:
    """Which component instance of a load defined each asset and asset check."""

    def __init__(self, result: LoadResult) -> None:
        self._result = result
        self._instances = {instance.source: instance for instance in result.project.instances}

    def instance(self, item: AssetSpec | AssetCheckSpec) -> ComponentInstance[Component] | None:
        if isinstance(item, AssetSpec):
            source = self._result.asset_sources.get(item.key)
        else:
            source = self._result.check_sources.get(item.key)
        return self._instances.get(source) if source is not None else None

    def problem(self, item: AssetSpec | AssetCheckSpec, message: str) -> LoadProblem:
        """``message`` about ``item``, at its component's ``defs.yaml`` entry."""
        instance = self.instance(item)
        if instance is None:
            return LoadProblem(message)
        return LoadProblem(message, instance.location, instance.source, instance.state_key)
