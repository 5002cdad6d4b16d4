"""Safe YAML loading that remembers the line of every value, and ``{{ }}`` templates."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from defstate.errors import DefsYamlError, SourceLocation, TemplateError

ValuePath = tuple[str | int, ...]

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
_ENV_NAME = re.compile(r"env\.([A-Za-z_][A-Za-z0-9_]*)")
# `{{ node.name }}`, `{{ spec.key }}`: a component's build-time translation templates (as in
# Dagster's `translation:`), left for the component to render.
_COMPONENT_TEMPLATE = re.compile(r"(node|spec)\b.*", re.DOTALL)


@attrs.frozen
class YamlDocument:
    """One YAML document of a file: its plain value and the 1-based line of each value."""

    path: Path
    value: Any
    lines: Mapping[ValuePath, int]

    def line_of(self, path: ValuePath) -> int:
        """The line of the value at ``path``, or of its nearest ancestor."""
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def location(self, path: ValuePath = ()) -> SourceLocation:
        return SourceLocation(self.path, self.line_of(path))


# libyaml's safe loader when available (5x faster on large projects), else the pure one;
# both construct only plain data types, never arbitrary Python objects.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A safe loader whose nodes keep their line numbers (see ``_walk``)."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _at(source: Path, node: yaml.Node) -> SourceLocation:
    return SourceLocation(source, node.start_mark.line + 1)


def _walk(
    loader: _LineLoader,
    source: Path,
    node: yaml.Node,
    path: ValuePath,
    lines: dict[ValuePath, int],
    active: frozenset[int] = frozenset(),
) -> Any:
    lines[path] = node.start_mark.line + 1
    if not isinstance(node, yaml.CollectionNode):
        return loader.construct_object(node, deep=True)
    # locations are built only for errors: a project walks tens of thousands of nodes
    if id(node) in active:
        raise DefsYamlError("recursive alias: a value contains itself", _at(source, node))
    active = active | {id(node)}
    if isinstance(node, yaml.MappingNode):
        own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
        loader.flatten_mapping(node)  # resolves '<<' merge keys, putting merged pairs first
        merged = len(node.value) - own
        result: dict[Any, Any] = {}
        explicit: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise DefsYamlError("mapping keys must be scalars", _at(source, key_node))
            if index >= merged:  # written here: may override a merged key, not repeat itself
                if key in explicit:
                    raise DefsYamlError(f"duplicate key {key!r}", _at(source, key_node))
                explicit.add(key)
            key_path = (*path, str(key))
            result[key] = _walk(loader, source, value_node, key_path, lines, active)
            lines[key_path] = key_node.start_mark.line + 1
        return result
    return [
        _walk(loader, source, item, (*path, i), lines, active) for i, item in enumerate(node.value)
    ]


def load_yaml_documents(path: Path) -> list[YamlDocument]:
    """Parse every document of ``path``; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefsYamlError(f"cannot read: {exc}", SourceLocation(path)) from None
    loader = _LineLoader(text)
    loader.name = str(path)
    documents: list[YamlDocument] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[ValuePath, int] = {}
            value = _walk(loader, path, node, (), lines)
            documents.append(YamlDocument(path, value, lines))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "invalid YAML"
        raise DefsYamlError(f"invalid YAML: {problem}", SourceLocation(path, line)) from None
    except yaml.YAMLError as exc:
        raise DefsYamlError(f"invalid YAML: {exc}", SourceLocation(path)) from None
    finally:
        loader.dispose()
    return documents


def expand_templates(text: str, project_root: Path, env: Mapping[str, str]) -> str:
    """Expand ``{{ env.NAME }}`` and ``{{ project_root }}`` in ``text``.

    Substitution only: anything else between ``{{ }}`` is an error, nothing is evaluated.
    ``{{ node... }}`` and ``{{ spec... }}`` are left as they are: components render them
    when they build definitions (e.g. the dbt component's ``translation:``).
    """

    def substitute(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        if expression == "project_root":
            return str(project_root)
        if _COMPONENT_TEMPLATE.fullmatch(expression):
            return match.group(0)
        env_match = _ENV_NAME.fullmatch(expression)
        if env_match is None:
            raise TemplateError(
                f"unsupported template {{{{ {expression} }}}} (use {{{{ env.NAME }}}} "
                "or {{ project_root }})"
            )
        name = env_match.group(1)
        if name not in env:
            raise TemplateError(
                f"environment variable {name} is not set (used as {{{{ env.{name} }}}})"
            )
        return env[name]

    return _TEMPLATE.sub(substitute, text)


def map_strings(value: Any, function: Callable[[str, ValuePath], str], path: ValuePath = ()) -> Any:
    """``value`` with every string in it (at any depth) replaced by ``function(text, path)``."""
    if isinstance(value, str):
        return function(value, path)
    if isinstance(value, list):
        return [map_strings(v, function, (*path, i)) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {k: map_strings(v, function, (*path, str(k))) for k, v in value.items()}
    return value


def render_templates(
    value: Any, document: YamlDocument, project_root: Path, path: ValuePath = ()
) -> Any:
    """Expand templates in every string of ``value``; errors name the file and line."""

    def expand(text: str, where: ValuePath) -> str:
        try:
            return expand_templates(text, project_root, os.environ)
        except TemplateError as exc:
            raise DefsYamlError(str(exc), document.location(where)) from None

    return map_strings(value, expand, path)
