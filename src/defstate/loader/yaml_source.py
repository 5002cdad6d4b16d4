"""Safe YAML loading that remembers the line of every value, and ``{{ }}`` templates.

Hostile input is bounded before anything is constructed: only plain tags, nesting up to
``MAX_DEPTH``, aliases adding at most ``MAX_ALIAS_NODES`` nodes / ``MAX_ALIAS_BYTES`` of text,
integers of at most ``MAX_INT_DIGITS`` digits. Every problem is a ``DefsYamlError`` at the
file and line of its document (docs/hostile-input-and-secrets.md).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

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


# libyaml's safe loader when available (5x faster on large projects), else the pure one;
# both construct only plain data types, never arbitrary Python objects.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A safe loader whose nodes keep their line numbers (see ``_Walk``)."""

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        # libyaml asks at every node. A plain scalar's tag depends on its text alone when
        # there are no path resolvers (a safe loader has none): short ones are cached.
        if kind is yaml.ScalarNode and implicit[0] and not self.yaml_path_resolvers:
            return _short_plain_tag(value) if len(value) <= 64 else _plain_tag(value)
        tag: str = super().resolve(kind, value, implicit)
        return tag


_RESOLVER = yaml.resolver.Resolver()


def _plain_tag(value: str) -> str:
    """The tag PyYAML's resolver gives a plain scalar, e.g. ``!!int`` for ``12``."""
    tag: str = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return tag


_short_plain_tag = functools.lru_cache(maxsize=4096)(_plain_tag)


# Documented limits (README, "Project format"): what one defs.yaml document may expand to.
MAX_DEPTH = 100
"""Collections nested deeper than this are an error."""
MAX_ALIAS_NODES = 100_000
"""Nodes that aliases (``*name``, ``<<: *name``) may add to one document, in all."""
MAX_ALIAS_BYTES = 10 * 1024 * 1024
"""Characters of scalar text that aliases may add to one document, in all."""
MAX_INT_DIGITS = 1000
"""Digits of one integer."""

_YAML = "tag:yaml.org,2002:"
_MERGE_TAG = _YAML + "merge"
_SCALAR_TAGS = {_YAML + t: "!!" + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_COLLECTION_TAGS = {_YAML + "map", _YAML + "seq"}
_ALLOWED_TAGS = "!!str, !!int, !!float, !!bool, !!null, !!timestamp, !!map, !!seq"


def _at(source: Path, node: yaml.Node) -> SourceLocation:
    return SourceLocation(source, node.start_mark.line + 1)


def _short(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_YAML) :] if tag.startswith(_YAML) else tag


@attrs.define
class _Measure:
    """Pre-pass over one document's node graph, before anything is constructed: checks tags
    and depth, finds recursive aliases, and bounds what aliases expand to. Sizes are memoized
    per node, so the pass is linear in the document's size, however much aliases repeat; the
    same pass counts the document's own (distinct) nodes and text."""

    source: Path
    sizes: dict[int, tuple[int, int]] = attrs.field(factory=dict)
    active: set[int] = attrs.field(factory=set)
    own_text: int = 0

    def check(self, root: yaml.Node) -> None:
        nodes, text = self.size(root, 1)
        own_nodes = len(self.sizes)
        if nodes - own_nodes > MAX_ALIAS_NODES or text - self.own_text > MAX_ALIAS_BYTES:
            raise DefsYamlError(
                f"aliases expand this document past the limit ({MAX_ALIAS_NODES} nodes or "
                f"{MAX_ALIAS_BYTES // (1024 * 1024)} MiB of text added by aliases)",
                _at(self.source, root),
            )

    def size(self, node: yaml.Node, depth: int) -> tuple[int, int]:
        """``(nodes, characters)`` of ``node`` with every alias expanded."""
        known = self.sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.ScalarNode):
            if node.tag not in _SCALAR_TAGS and node.tag != _MERGE_TAG:
                raise self._bad_tag(node)
            result = (1, len(node.value))
            self.own_text += result[1]  # once per distinct node: sizes are memoized
        else:
            if node.tag not in _COLLECTION_TAGS:
                raise self._bad_tag(node)
            if depth > MAX_DEPTH:
                raise DefsYamlError(
                    f"nested deeper than {MAX_DEPTH} levels", _at(self.source, node)
                )
            if id(node) in self.active:
                raise DefsYamlError(
                    "recursive alias: a value contains itself", _at(self.source, node)
                )
            self.active.add(id(node))
            children = (
                node.value
                if isinstance(node, yaml.SequenceNode)
                else [n for pair in node.value for n in pair]
            )
            nodes, text = 1, 0
            for child in children:
                child_nodes, child_text = self.size(child, depth + 1)
                nodes += child_nodes
                text += child_text
                if nodes > MAX_ALIAS_NODES * 10 or text > MAX_ALIAS_BYTES * 10:
                    break  # far past any limit: stop counting (check() rejects it)
            self.active.discard(id(node))
            result = (nodes, text)
        self.sizes[id(node)] = result
        return result

    def _bad_tag(self, node: yaml.Node) -> DefsYamlError:
        return DefsYamlError(
            f"unsupported tag {_tag_name(node.tag)} (allowed: {_ALLOWED_TAGS})",
            _at(self.source, node),
        )


_STR_TAG = _YAML + "str"
_INT_TAG = _YAML + "int"


def _construct_scalar(loader: _LineLoader, source: Path, node: yaml.ScalarNode) -> Any:
    """The value of one scalar; a value its tag cannot read is an error at its line."""
    tag = node.tag
    if tag == _STR_TAG:  # most scalars: PyYAML's constructor returns the text as it is
        return node.value
    if tag == _INT_TAG:
        digits = sum(c.isdigit() for c in node.value)
        if digits > MAX_INT_DIGITS:
            raise DefsYamlError(
                f"integer too large ({digits} digits, at most {MAX_INT_DIGITS})",
                _at(source, node),
            )
    try:
        return loader.construct_object(node, deep=True)
    except Exception as exc:  # constructors raise ValueError, KeyError, AttributeError...
        loader.recursive_objects.clear()
        detail = f" ({exc})" if isinstance(exc, ValueError) and str(exc) else ""
        raise DefsYamlError(
            f"invalid {_SCALAR_TAGS.get(tag, tag)} value {_short(node.value)}{detail}",
            _at(source, node),
        ) from None


def _walk(
    loader: _LineLoader,
    source: Path,
    node: yaml.Node,
    path: ValuePath,
    lines: dict[ValuePath, int],
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        return _construct_scalar(loader, source, node)
    # locations are built only for errors: a project walks tens of thousands of nodes
    if isinstance(node, yaml.MappingNode):
        merged = 0
        if any(key_node.tag == _MERGE_TAG for key_node, _ in node.value):
            own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
            loader.flatten_mapping(node)  # resolves '<<' merge keys, merged pairs first
            merged = len(node.value) - own
        result: dict[Any, Any] = {}
        explicit: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):
                raise DefsYamlError("mapping keys must be scalars", _at(source, key_node))
            key = _construct_scalar(loader, source, key_node)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise DefsYamlError("mapping keys must be scalars", _at(source, key_node))
            if index >= merged:  # written here: may override a merged key, not repeat itself
                if key in explicit:
                    raise DefsYamlError(f"duplicate key {key!r}", _at(source, key_node))
                explicit.add(key)
            key_path = (*path, str(key))
            result[key] = _walk(loader, source, value_node, key_path, lines)
            lines[key_path] = key_node.start_mark.line + 1
        return result
    return [_walk(loader, source, item, (*path, i), lines) for i, item in enumerate(node.value)]


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


def _syntax_error(path: Path, text: str, exc: yaml.YAMLError) -> DefsYamlError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "invalid YAML"
        return DefsYamlError(f"invalid YAML: {problem}", SourceLocation(path, line))
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.encode("utf-8", "surrogatepass")[: exc.position].count(b"\n") + 1
        return DefsYamlError(
            f"invalid YAML: {exc.reason} (character {exc.character!r})", SourceLocation(path, line)
        )
    return DefsYamlError(f"invalid YAML: {exc}", SourceLocation(path))


def read_yaml_file(path: Path) -> YamlFile:
    """Parse every document of ``path``; every problem names the file and line.

    A value problem (a bad ``!!int``, an invalid date, an unsupported tag, an alias bomb)
    is an error of its document only; the file's other documents are still read.
    """
    try:
        data = read_file_bytes(path)
    except DefsYamlError as exc:
        return YamlFile(path, (), (exc,))
    return parse_yaml_bytes(path, data)


def parse_yaml_bytes(path: Path, data: bytes) -> YamlFile:
    """:func:`read_yaml_file` of the bytes ``data`` read from ``path``."""
    try:
        text = _decode(path, data)
    except DefsYamlError as exc:
        return YamlFile(path, (), (exc,))
    loader = _LineLoader(text)
    loader.name = str(path)
    documents: list[YamlDocument] = []
    errors: list[DefsYamlError] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            try:
                _Measure(path).check(node)
                lines: dict[ValuePath, int] = {}
                documents.append(YamlDocument(path, _walk(loader, path, node, (), lines), lines))
            except DefsYamlError as exc:
                errors.append(exc)
            except yaml.MarkedYAMLError as exc:  # e.g. a merge key with a non-mapping value
                errors.append(_syntax_error(path, text, exc))
            finally:  # each document constructs afresh (as PyYAML's construct_document does)
                loader.constructed_objects = {}
                loader.recursive_objects = {}
    except yaml.YAMLError as exc:
        errors.append(_syntax_error(path, text, exc))
    except RecursionError:
        errors.append(DefsYamlError(f"nested deeper than {MAX_DEPTH} levels", SourceLocation(path)))
    finally:
        loader.dispose()
    return YamlFile(path, tuple(documents), tuple(errors))


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
