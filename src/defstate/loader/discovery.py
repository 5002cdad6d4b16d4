"""Finding the ``defs.yaml`` files of a project and turning their entries into components."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import attrs

from defstate.components.component import Component
from defstate.components.context import ComponentLoadContext
from defstate.components.registry import resolve_component_type
from defstate.components.state_backed import StateBackedComponent
from defstate.definitions import Definitions
from defstate.errors import (
    AttributeValueError,
    ComponentTypeError,
    DefstateError,
    DefsYamlError,
    InvalidStateKeyError,
    SourceLocation,
)
from defstate.loader.folders import is_skipped_in_defs
from defstate.loader.project import ProjectConfig
from defstate.loader.yaml_cache import YamlParseCache
from defstate.loader.yaml_source import YamlDocument, render_templates
from defstate.redaction import redact, redact_optional
from defstate.state_storage.keys import encode_key
from defstate.user_code import describe_exception, format_traceback

DEFS_YAML = "defs.yaml"
_ENTRY_KEYS = frozenset({"type", "attributes"})


@attrs.frozen
class LoadProblem:
    """One problem of a load: where (file and line), which component and key, and what.

    A record in ``LoadResult.errors``, not an exception: a load reports its problems and
    still returns what it could build.
    """

    # every text is redacted: an error may quote a secret (also one a component raised)
    message: str = attrs.field(converter=redact)
    location: SourceLocation | None = None
    component: str | None = attrs.field(default=None, converter=redact_optional)
    key: str | None = attrs.field(default=None, converter=redact_optional)
    kind: str = "error"  # "refresh": a refresh failed and the previous state was used
    # the traceback into the user's code when a component raised (shown by --debug)
    traceback: str | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def from_exception(cls, exc: BaseException) -> LoadProblem:
        if isinstance(exc, DefstateError):
            return cls(exc.message, exc.location)
        return cls(describe_exception(exc), traceback=format_traceback(exc))

    @classmethod
    def for_instance(
        cls, instance: ComponentInstance[Component], exc: BaseException
    ) -> LoadProblem:
        """``exc``, raised for ``instance`` or for its key (its storage, its state)."""
        if isinstance(exc, DefstateError):
            return cls(exc.message, instance.location, instance.source, instance.state_key)
        return cls(
            describe_exception(exc),
            instance.location,
            instance.source,
            instance.state_key,
            traceback=format_traceback(exc),
        )

    def relative_to(self, root: Path | None) -> LoadProblem:
        """This problem with its file relative to the project ``root`` (how paths are shown)."""
        if root is None or self.location is None:
            return self
        try:
            relative = self.location.path.relative_to(root)
        except ValueError:
            return self
        return attrs.evolve(self, location=SourceLocation(relative, self.location.line))

    def __str__(self) -> str:
        where = str(self.location) if self.location else self.component
        prefix = f"{where}: " if where else ""
        key = f"[{self.key}] " if self.key else ""
        return f"{prefix}{key}{self.message}"

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "file": str(self.location.path) if self.location else None,
            "line": self.location.line if self.location else None,
            "component": self.component,
            "key": self.key,
            "kind": self.kind,
        }


C_co = TypeVar("C_co", bound=Component, covariant=True)


@attrs.frozen
class ComponentInstance(Generic[C_co]):
    """A component built from one ``defs.yaml`` entry, with where it came from.

    ``ComponentInstance[StateBackedComponent]`` (see :meth:`state_backed`) is an instance whose
    component has state: what key groups and refresh targets hold.
    """

    component: C_co
    type_name: str
    context: ComponentLoadContext
    location: SourceLocation
    # the entry's attributes after templates: dev mode fingerprints them
    attributes: Mapping[str, Any] = attrs.field(factory=dict)
    # resolved once: get_defs_state_key() may read files (the dbt component reads its project)
    state_key: str | None = attrs.field(init=False)

    @state_key.default
    def _state_key(self) -> str | None:
        if isinstance(self.component, StateBackedComponent):
            return self.component.defs_state_key
        return None

    @property
    def source(self) -> str:
        return self.context.source

    def defs_at(self, state_path: Path | None) -> Definitions:
        """The definitions this instance builds from the state at ``state_path``: what a
        load, the refresh guard and ``state diff`` all build."""
        defs = self.component.build_defs(attrs.evolve(self.context, state_path=state_path))
        if not isinstance(defs, Definitions):
            raise TypeError(f"build_defs returned {type(defs).__name__}, not Definitions")
        return defs

    def state_backed(self) -> ComponentInstance[StateBackedComponent] | None:
        """This instance, typed as holding a state-backed component, if it does."""
        if isinstance(self.component, StateBackedComponent):
            return cast("ComponentInstance[StateBackedComponent]", self)
        return None


def find_defs_yaml_files(defs_dir: Path) -> list[Path]:
    """Every ``defs.yaml`` under ``defs_dir``, sorted; hidden and cache folders skipped."""
    found: list[Path] = []

    def walk(folder: str) -> None:  # str paths: a Path per folder costs more than its listing
        try:  # scandir: the kind of each entry comes with the listing, no stat per entry
            with os.scandir(folder) as listing:
                entries = sorted((e.name, e.is_dir()) for e in listing)
        except FileNotFoundError:
            return
        for name, is_dir in entries:
            if is_skipped_in_defs(name):
                continue
            if is_dir:
                walk(os.path.join(folder, name))
            elif name == DEFS_YAML:
                found.append(Path(folder, name))

    walk(os.fspath(defs_dir))
    return found


def _label(config: ProjectConfig, location: SourceLocation) -> str:
    root, path = os.fspath(config.root), os.fspath(location.path)
    if path.startswith(root) and path[len(root) : len(root) + 1] == os.sep:
        relative = path[len(root) + 1 :]  # relative_to, without parsing (paths are normalised)
        if os.sep != "/":
            relative = relative.replace(os.sep, "/")
    else:
        try:
            relative = location.path.relative_to(config.root).as_posix()
        except ValueError:
            relative = location.path.as_posix()
    return f"{relative}:{location.line}"


def ensure_importable(root: Path) -> None:
    """Make ``package.module`` paths importable from the project root."""
    text = str(root)
    if text not in sys.path:
        sys.path.insert(0, text)


def instantiate(config: ProjectConfig, document: YamlDocument) -> ComponentInstance[Component]:
    """Build the component a ``defs.yaml`` document describes."""
    entry = document.value
    where = document.location()
    if not isinstance(entry, dict):
        raise DefsYamlError("a defs.yaml document must be a mapping with 'type:'", where)
    unknown = sorted(str(k) for k in set(entry) - _ENTRY_KEYS)
    if unknown:
        raise DefsYamlError(
            f"unknown top-level key(s) {', '.join(map(repr, unknown))} "
            "(expected 'type' and 'attributes')",
            document.location((unknown[0],)),
        )
    type_name = entry.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise DefsYamlError("missing 'type:' (a dotted path package.module.Class)", where)
    where = document.location(("type",))
    try:
        cls = resolve_component_type(type_name)
    except ComponentTypeError as exc:
        raise DefsYamlError(str(exc), where) from None
    attributes = entry.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise DefsYamlError("'attributes:' must be a mapping", document.location(("attributes",)))
    attributes = render_templates(attributes, document, config.root, ("attributes",))
    context = ComponentLoadContext(
        project_root=config.root,
        defs_dir=config.defs_dir,
        component_dir=document.path.parent,
        source=_label(config, where),
    )
    try:
        component = cls.from_attributes(attributes, context)
    except AttributeValueError as exc:
        raise DefsYamlError(
            f"{type_name}: {exc.message}", document.location(("attributes", *exc.path))
        ) from None
    instance = ComponentInstance(component, type_name, context, where, attributes)
    if instance.state_key is not None:
        try:
            encode_key(instance.state_key)
        except InvalidStateKeyError as exc:
            key_path = ("attributes", "defs_state", "key")
            raise DefsYamlError(exc.message, document.location(key_path)) from None
    return instance


@attrs.frozen
class DiscoveredComponents:
    """The components of a project, and the entries that could not be built."""

    instances: tuple[ComponentInstance[Component], ...]
    errors: tuple[LoadProblem, ...]


def discover_components(config: ProjectConfig) -> DiscoveredComponents:
    """Parse and instantiate every ``defs.yaml`` entry; one bad entry hides no other."""
    ensure_importable(config.root)
    instances: list[ComponentInstance[Component]] = []
    errors: list[LoadProblem] = []
    if not config.defs_dir.is_dir():
        errors.append(
            LoadProblem(
                f"defs folder {config.defs_dir} does not exist (set [tool.defstate] defs_dir)",
                SourceLocation(config.pyproject),
            )
        )
        return DiscoveredComponents((), tuple(errors))
    cache = YamlParseCache.for_defs_dir(config.defs_dir)
    files = [cache.read(path) for path in find_defs_yaml_files(config.defs_dir)]
    cache.save()  # one write, only when a file changed
    for loaded in files:
        errors.extend(LoadProblem.from_exception(exc) for exc in loaded.errors)
        for document in loaded.documents:
            try:
                instances.append(instantiate(config, document))
            except Exception as exc:  # a bad entry, or a component's own code failed
                errors.append(_construction_problem(config, document, exc))
    return DiscoveredComponents(tuple(instances), tuple(errors))


def _construction_problem(
    config: ProjectConfig, document: YamlDocument, exc: Exception
) -> LoadProblem:
    """An entry that could not be built, at the place it names (its ``type:`` if none)."""
    if isinstance(exc, DefstateError) and exc.location is not None:
        return LoadProblem.from_exception(exc)
    location = document.location(("type",))
    problem = LoadProblem.from_exception(exc)
    return LoadProblem(
        problem.message, location, _label(config, location), traceback=problem.traceback
    )
