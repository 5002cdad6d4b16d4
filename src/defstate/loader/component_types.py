"""The component types a project can use: defstate's contrib ones, the project's own, the ones
its ``defs.yaml`` files name, and registered short names; plus the JSON Schema of defs.yaml."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import attrs

from defstate.components.catalog import ComponentTypeInfo, describe_component_type
from defstate.components.component import Component
from defstate.components.registry import registered_component_types, resolve_component_type
from defstate.errors import DefstateError
from defstate.loader.discovery import ensure_importable, find_defs_yaml_files
from defstate.loader.folders import NOT_PROJECT_SOURCES
from defstate.loader.project import ProjectConfig, load_project_config
from defstate.loader.yaml_source import load_yaml_documents

CONTRIB_PACKAGE = "defstate.contrib"
_SKIPPED = frozenset({"tests", "test"}) | NOT_PROJECT_SOURCES


@attrs.frozen
class ComponentTypes:
    """The types found, by name, and what could not be imported (one line each)."""

    types: tuple[ComponentTypeInfo, ...]
    problems: tuple[str, ...] = ()

    def get(self, name: str) -> ComponentTypeInfo | None:
        return next((t for t in self.types if t.name == name), None)


def list_component_types(project_root: Path | str | None = None) -> ComponentTypes:
    """Every component type importable here; without a project only contrib and registered
    types. Importing a project module runs its top-level code, as a load would."""
    found: dict[str, type[Component]] = {}
    problems: list[str] = []
    # contrib's direct modules and packages (contrib.dbt), not their submodules; a module
    # whose optional extra is not installed is left out quietly
    _module_types(CONTRIB_PACKAGE, found, problems, project=False)
    config = _optional_config(project_root)
    if config is not None:
        ensure_importable(config.root)
        for package in _project_packages(config):
            _module_types(package, found, problems)
        for name in _named_in_defs_yaml(config):
            try:
                found.setdefault(name, resolve_component_type(name))
            except DefstateError as exc:
                problems.append(exc.message)
    found.update(registered_component_types())
    types = tuple(describe_component_type(n, c) for n, c in sorted(found.items()))
    return ComponentTypes(types, tuple(dict.fromkeys(problems)))


def get_component_type(name: str, project_root: Path | str | None = None) -> ComponentTypeInfo:
    """One type by its ``type:`` name (imported if need be, from the project root)."""
    config = _optional_config(project_root)
    if config is not None:
        ensure_importable(config.root)
    return describe_component_type(name, resolve_component_type(name))


def _optional_config(project_root: Path | str | None) -> ProjectConfig | None:
    try:
        return load_project_config(project_root)
    except DefstateError:
        if project_root is not None:
            raise
        return None  # outside a project: contrib and registered types only


def _module_types(
    package: str, found: dict[str, type[Component]], problems: list[str], project: bool = True
) -> None:
    """The component classes defined in ``package`` and its modules (all levels for a
    project package, whose import errors are reported)."""
    try:
        module = importlib.import_module(package)
    except Exception as exc:  # a project module that fails to import: report, go on
        problems.append(f"cannot import {package}: {type(exc).__name__}: {exc}")
        return
    modules = [module]
    path = getattr(module, "__path__", [])
    infos = pkgutil.walk_packages(path, f"{package}.") if project else pkgutil.iter_modules(path)
    for info in infos:
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        name = info.name if project else f"{package}.{info.name}"
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            if project:
                problems.append(f"cannot import {name}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # a module that fails to import: report, go on
            problems.append(f"cannot import {name}: {type(exc).__name__}: {exc}")
    for mod in modules:
        # the module's own namespace: getmembers() would resolve lazy attributes, importing
        # what a package defers (contrib.dagster's Dagster)
        for cls in list(vars(mod).values()):
            if (
                inspect.isclass(cls)
                and cls.__module__ == mod.__name__
                and _is_concrete_component(cls)
            ):
                found.setdefault(f"{cls.__module__}.{cls.__qualname__}", cls)


def _is_concrete_component(cls: type[Any]) -> bool:
    return (
        issubclass(cls, Component)
        and attrs.has(cls)
        and not inspect.isabstract(cls)
        and not cls.__name__.startswith("_")
    )


def _project_packages(config: ProjectConfig) -> list[str]:
    """Top-level packages of the project root (folders with ``__init__.py``)."""
    packages = []
    for entry in sorted(config.root.iterdir()):
        if (
            entry.is_dir()
            and not entry.name.startswith((".", "_"))
            and entry.name not in _SKIPPED
            and entry.name.isidentifier()
            and (entry / "__init__.py").is_file()
        ):
            packages.append(entry.name)
    return packages


def _named_in_defs_yaml(config: ProjectConfig) -> list[str]:
    names = []
    for path in find_defs_yaml_files(config.defs_dir):
        try:
            documents = load_yaml_documents(path)
        except DefstateError:
            continue  # `defstate check` reports it
        for document in documents:
            value = document.value
            if isinstance(value, dict) and isinstance(value.get("type"), str):
                names.append(value["type"])
    return names


def defs_yaml_json_schema(types: ComponentTypes) -> dict[str, Any]:
    """A JSON Schema (draft-07, as YAML language servers read it) of one ``defs.yaml``
    document: ``type`` is one of ``types`` and ``attributes`` fit that type."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "defstate defs.yaml",
        "description": "One component instance: a type and its attributes.",
        "type": "object",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": {
                "type": "string",
                "description": "Dotted import path of a component class (or a registered name).",
                "anyOf": [{"enum": [t.name for t in types.types]}, {"type": "string"}],
            },
            "attributes": {"type": "object"},
        },
        "allOf": [
            {
                "if": {"properties": {"type": {"const": t.name}}, "required": ["type"]},
                "then": {
                    "properties": {
                        "attributes": {"description": t.summary, **t.attributes_schema()}
                    }
                },
            }
            for t in types.types
        ],
    }
