"""Parsing YAML text into :class:`~defstate.loader.yaml_source.YamlDocument`s with PyYAML:
the checks of the documented limits, then values with the line of each.

Imported only when a file is parsed (:func:`~defstate.loader.yaml_source.parse_yaml_bytes`):
a load whose files all come from the parse cache never imports PyYAML.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import attrs
import yaml

from defstate.errors import DefsYamlError, SourceLocation
from defstate.loader.yaml_source import (
    MAX_ALIAS_BYTES,
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    MAX_INT_DIGITS,
    ValuePath,
    YamlDocument,
    YamlFile,
)

# libyaml's safe loader when available (5x faster on large projects), else the pure one;
# both construct only plain data types, never arbitrary Python objects.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A safe loader whose nodes keep their line numbers (see ``_walk``)."""

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


_YAML = "tag:yaml.org,2002:"
_MERGE_TAG = _YAML + "merge"
_SCALAR_TAGS = {_YAML + t: "!!" + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_KNOWN_SCALAR_TAGS = frozenset([*_SCALAR_TAGS, _MERGE_TAG])  # a merge key ('<<') is a scalar
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
            if node.tag not in _KNOWN_SCALAR_TAGS:
                raise _bad_tag(self.source, node)
            result = (1, len(node.value))
            self.own_text += result[1]  # once per distinct node: sizes are memoized
        else:
            if node.tag not in _COLLECTION_TAGS:
                raise _bad_tag(self.source, node)
            if depth > MAX_DEPTH:
                raise _too_deep(_at(self.source, node))
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


def _bad_tag(source: Path, node: yaml.Node) -> DefsYamlError:
    return DefsYamlError(
        f"unsupported tag {_tag_name(node.tag)} (allowed: {_ALLOWED_TAGS})", _at(source, node)
    )


def _too_deep(where: SourceLocation) -> DefsYamlError:
    return DefsYamlError(f"nested deeper than {MAX_DEPTH} levels", where)


_STR_TAG = _YAML + "str"
_INT_TAG = _YAML + "int"


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _int_digits(text: str) -> int:
    """The digits of an integer's text, hexadecimal ones included: ``0x`` + 5000 ``f`` is
    6000 decimal digits (past what ``json`` writes), though none of its letters is a digit."""
    body = text.lstrip("+-")
    if body[:2].lower() in ("0x", "0b"):
        body = body[2:]
    return sum(c in _HEX_DIGITS for c in body)


def _construct_scalar(loader: _LineLoader, source: Path, node: yaml.ScalarNode) -> Any:
    """The value of one scalar; a value its tag cannot read is an error at its line."""
    tag = node.tag
    if tag == _STR_TAG:  # most scalars: PyYAML's constructor returns the text as it is
        return node.value
    if tag == _INT_TAG:
        digits = _int_digits(node.value)
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


_ScalarNode, _MappingNode = yaml.ScalarNode, yaml.MappingNode


def _walk(
    loader: _LineLoader,
    source: Path,
    node: yaml.Node,
    path: ValuePath,
    lines: dict[ValuePath, int],
    measured: bool,
) -> Any:
    """The value of ``node``, recording the line of it and of everything in it in ``lines``.
    Unless the document was ``measured`` (``_Measure``: it has anchors), this pass checks the
    tags and the depth itself: without anchors the document is a tree, nothing expands. (A
    document with several problems then reports the first in reading order, where the
    measuring pass reports a tag or depth problem before a value's.)"""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, _ScalarNode):
        if not measured and node.tag not in _KNOWN_SCALAR_TAGS:
            raise _bad_tag(source, node)
        return _construct_scalar(loader, source, node)
    if not measured:
        if node.tag not in _COLLECTION_TAGS:
            raise _bad_tag(source, node)
        if len(path) >= MAX_DEPTH:
            raise _too_deep(_at(source, node))
    if isinstance(node, _MappingNode):
        return _walk_mapping(loader, source, node, path, lines, measured)
    return [
        _walk(loader, source, item, (*path, i), lines, measured)
        for i, item in enumerate(node.value)
    ]


def _walk_mapping(
    loader: _LineLoader,
    source: Path,
    node: yaml.MappingNode,
    path: ValuePath,
    lines: dict[ValuePath, int],
    measured: bool,
) -> dict[Any, Any]:
    # locations are built only for errors: a project walks tens of thousands of nodes
    merged = 0
    if any(key_node.tag == _MERGE_TAG for key_node, _ in node.value):
        if not measured:  # check what is merged before flattening it, as a measured document
            _Measure(source).size(node, len(path) + 1)
            measured = True
        own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
        loader.flatten_mapping(node)  # resolves '<<' merge keys, merged pairs first
        merged = len(node.value) - own
    result: dict[Any, Any] = {}
    explicit: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        if not isinstance(key_node, _ScalarNode):
            if not measured:  # its tags and depth first, as in a measured document
                _Measure(source).size(key_node, len(path) + 2)
            raise DefsYamlError("mapping keys must be scalars", _at(source, key_node))
        if not measured and key_node.tag not in _KNOWN_SCALAR_TAGS:
            raise _bad_tag(source, key_node)
        key = _construct_scalar(loader, source, key_node)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise DefsYamlError("mapping keys must be scalars", _at(source, key_node))
        if index >= merged:  # written here: may override a merged key, not repeat itself
            if key in explicit:
                raise DefsYamlError(f"duplicate key {key!r}", _at(source, key_node))
            explicit.add(key)
        key_path = (*path, str(key))
        result[key] = _walk(loader, source, value_node, key_path, lines, measured)
        lines[key_path] = key_node.start_mark.line + 1
    return result


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


def parse_documents(path: Path, text: str) -> YamlFile:
    """Every document of ``text`` (read from ``path``), and one error per other document."""
    loader = _LineLoader(text)
    loader.name = str(path)
    # aliases need anchors (`&name`): without a '&' the documents are trees, checked in one pass
    measure = "&" in text
    documents: list[YamlDocument] = []
    errors: list[DefsYamlError] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            try:
                if measure:
                    _Measure(path).check(node)
                lines: dict[ValuePath, int] = {}
                value = _walk(loader, path, node, (), lines, measure)
                documents.append(YamlDocument(path, value, lines))
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
        errors.append(_too_deep(SourceLocation(path)))
    finally:
        loader.dispose()
    return YamlFile(path, tuple(documents), tuple(errors))
