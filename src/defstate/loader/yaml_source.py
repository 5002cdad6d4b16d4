"""Safe YAML loading that remembers the line of every value, and ``{{ }}`` templates.

Hostile input is bounded before anything is constructed: only plain tags, nesting up to
``MAX_DEPTH``, aliases adding at most ``MAX_ALIAS_NODES`` nodes / ``MAX_ALIAS_BYTES`` of text,
integers of at most ``MAX_INT_DIGITS`` digits. Every problem is a ``DefsYamlError`` at the
file and line of its document (docs/hostile-input-and-secrets.md). The parser itself is
:mod:`defstate.loader.yaml_parse`, imported on the first parse: PyYAML costs milliseconds of
every process, and files found in the parse cache (:mod:`defstate.loader.yaml_cache`) need it not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from defstate.errors import DefsYamlError, SourceLocation, TemplateError
from defstate.redaction import register_secret

ValuePath = tuple[str | int, ...]

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NAME = r"([A-Za-z_][A-Za-z0-9_]*)"
_ENV_NAME = re.compile(rf"env\.{_NAME}|env\(\s*(?:'{_NAME}'|\"{_NAME}\")\s*\)")
_PROJECT_ROOT = frozenset({"project_root", "context.project_root"})
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


# Documented limits (README, "Project format"): what one defs.yaml document may expand to.
MAX_DEPTH = 100
"""Collections nested deeper than this are an error."""
MAX_ALIAS_NODES = 100_000
"""Nodes that aliases (``*name``, ``<<: *name``) may add to one document, in all."""
MAX_ALIAS_BYTES = 10 * 1024 * 1024
"""Characters of scalar text that aliases may add to one document, in all."""
MAX_INT_DIGITS = 1000
"""Digits of one integer."""


@attrs.frozen
class YamlFile:
    """The documents of one YAML file that could be read, and one error per other document
    (a syntax error ends the file: the documents before it are kept)."""

    path: Path
    documents: tuple[YamlDocument, ...]
    errors: tuple[DefsYamlError, ...]


def read_file_bytes(path: Path) -> bytes:
    """The bytes of ``path``; a file that cannot be read is a ``DefsYamlError`` naming it."""
    try:  # os.read: a third of Path.read_bytes' cost for the small files of a project
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            chunks = []
            while chunk := os.read(descriptor, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(descriptor)
    except OSError as exc:
        raise DefsYamlError(f"cannot read: {exc.strerror or exc}", SourceLocation(path)) from None
    return b"".join(chunks)


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DefsYamlError(
            f"not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded (save the file as UTF-8)",
            SourceLocation(path, line),
        ) from None


def read_yaml_file(path: Path, parse: Callable[[Path, bytes], YamlFile] | None = None) -> YamlFile:
    """Parse every document of ``path``; every problem names the file and line.

    A value problem (a bad ``!!int``, an invalid date, an unsupported tag, an alias bomb)
    is an error of its document only; the file's other documents are still read. ``parse``
    turns the bytes read into documents: :func:`parse_yaml_bytes` unless given (the parse
    cache gives its lookup, :meth:`~defstate.loader.yaml_cache.YamlParseCache.read`).
    """
    try:
        data = read_file_bytes(path)
    except DefsYamlError as exc:
        return YamlFile(path, (), (exc,))
    return (parse or parse_yaml_bytes)(path, data)


def parse_yaml_bytes(path: Path, data: bytes) -> YamlFile:
    """:func:`read_yaml_file` of the bytes ``data`` read from ``path``."""
    try:
        text = _decode(path, data)
    except DefsYamlError as exc:
        return YamlFile(path, (), (exc,))
    from defstate.loader.yaml_parse import parse_documents  # PyYAML: only to parse

    return parse_documents(path, text)


def load_yaml_documents(path: Path) -> list[YamlDocument]:
    """Parse every document of ``path``; raises the first problem (``DefsYamlError``)."""
    loaded = read_yaml_file(path)
    if loaded.errors:
        raise loaded.errors[0]
    return list(loaded.documents)


ALLOWED_TEMPLATES = (
    "{{ env.NAME }}, {{ env('NAME') }}, {{ project_root }} and {{ context.project_root }}"
)


def expand_templates(text: str, project_root: Path, env: Mapping[str, str]) -> str:
    """Expand the templates of :data:`ALLOWED_TEMPLATES` in ``text``.

    Substitution only: anything else between ``{{ }}`` is an error, nothing is evaluated and
    an expanded value is never expanded again. ``{{ node... }}`` and ``{{ spec... }}`` are left
    as they are: components render them when they build definitions (e.g. the dbt
    component's ``translation:``). Every value read from ``env`` is registered as a secret
    (:mod:`defstate.redaction`). Raises ``TemplateError`` naming every problem.
    """
    if "{{" not in text:
        return text
    problems: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        if expression in _PROJECT_ROOT:
            return str(project_root)
        if _COMPONENT_TEMPLATE.fullmatch(expression):
            return match.group(0)
        env_match = _ENV_NAME.fullmatch(expression)
        if env_match is None:
            shown = expression if len(expression) <= 60 else expression[:60] + "..."
            shown = shown.replace("\n", "\\n")
            problems.append(
                f"unsupported template {{{{ {shown} }}}} (allowed: {ALLOWED_TEMPLATES})"
            )
            return match.group(0)
        name = next(group for group in env_match.groups() if group)
        value = env.get(name)
        if value is None:
            problems.append(
                f"environment variable {name} is not set (used as {{{{ {expression} }}}})"
            )
            return match.group(0)
        register_secret(value)
        return value

    expanded = _TEMPLATE.sub(substitute, text)
    if problems:
        raise TemplateError("; ".join(problems), problems=tuple(problems))
    return expanded


def map_strings(value: Any, function: Callable[[str, ValuePath], str], path: ValuePath = ()) -> Any:
    """``value`` with every string in it (at any depth) replaced by ``function(text, path)``."""
    if isinstance(value, str):
        return function(value, path)
    if isinstance(value, list):
        return [map_strings(v, function, (*path, i)) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {k: map_strings(v, function, (*path, str(k))) for k, v in value.items()}
    return value


def _has_template(value: Any) -> bool:
    """Whether a string in ``value`` may hold a template (``{{``); true for unknown types."""
    kind = type(value)
    if kind is str:
        return "{{" in value
    if kind is dict:
        return any(_has_template(item) for item in value.values())
    if kind is list:
        return any(_has_template(item) for item in value)
    return not (kind is int or kind is float or kind is bool or value is None)


def render_templates(
    value: Any, document: YamlDocument, project_root: Path, path: ValuePath = ()
) -> Any:
    """Expand templates in every string of ``value``; errors name the file and line.

    ``value`` itself when none of its strings has a template (most entries): no copy."""
    if not _has_template(value):
        return value
    problems: list[tuple[int, str]] = []

    def expand(text: str, where: ValuePath) -> str:
        try:
            return expand_templates(text, project_root, os.environ)
        except TemplateError as exc:
            problems.extend((document.line_of(where), problem) for problem in exc.problems)
            return text

    rendered = map_strings(value, expand, path)
    if problems:  # every problem of the entry, not only the first
        first = problems[0][0]
        message = "; ".join(
            problem if line == first else f"{problem} (line {line})" for line, problem in problems
        )
        raise DefsYamlError(message, SourceLocation(document.path, first))
    return rendered
