"""Asset selection strings, in Dagster's syntax (``dg list defs --assets``, ``dagster asset``).

``key:raw/orders``, ``key:"raw/*"``, ``group:finance``, ``tag:pii``, ``tag:tier=gold``,
``kind:dbt``, ``owner:"team:data"``; ``+X`` / ``2+X`` (upstream, all or N levels), ``X+`` /
``X+2`` (downstream), ``sinks(X)``, ``roots(X)``, ``not``, ``and``, ``or`` (in that order of
precedence, case-insensitive) and parentheses; ``*`` alone selects every asset.

Only ``key:`` values take ``*`` wildcards (matching any characters, ``/`` included). Values
may be quoted with ``"``; unquoted values run to the next blank, parenthesis, ``+`` or ``=``
(so ``owner:team:data`` works unquoted). ``tag:NAME`` selects the assets that have tag NAME,
whatever its value; ``tag:NAME=VALUE`` the ones where it has that value.

    selection = AssetSelection.from_string("+key:marts/* and not kind:view")
    keys = selection.resolve(definitions.assets)

A syntax error is a ``SelectionSyntaxError`` naming the column (1-based) and what was
expected there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from defstate.definitions import AssetKey, AssetSpec
from defstate.errors import UsageError

ATTRIBUTES = ("key", "tag", "owner", "group", "kind")
FUNCTIONS = ("sinks", "roots")
_KEYWORDS = frozenset({"and", "or", "not"})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS = re.compile(r"[0-9]+")
_VALUE_END = frozenset(' \t\r\n()+="')


class SelectionSyntaxError(UsageError):
    """An asset selection string that cannot be parsed; ``column`` is 1-based."""

    def __init__(self, expression: str, column: int, problem: str) -> None:
        super().__init__(f"invalid selection at column {column}: {problem}")
        self.expression = expression
        self.column = column
        self.problem = problem

    @property
    def pointer(self) -> tuple[str, str]:
        """Two lines: the expression and a caret under the offending column."""
        return self.expression, " " * (self.column - 1) + "^"


Resolver = Callable[["_Graph"], frozenset[AssetKey]]


@attrs.frozen
class AssetSelection:
    """A parsed selection; ``resolve`` applies it to a set of asset specs."""

    text: str
    _resolver: Resolver = attrs.field(repr=False, eq=False)

    @classmethod
    def from_string(cls, text: str) -> AssetSelection:
        """Parse ``text``; raises ``SelectionSyntaxError`` pointing at the column."""
        return cls(text, _Parser(text).parse())

    def resolve(self, assets: Iterable[AssetSpec]) -> frozenset[AssetKey]:
        """The keys of the selected assets among ``assets``."""
        return self._resolver(_Graph(assets))

    def select(self, assets: Sequence[AssetSpec]) -> list[AssetSpec]:
        """The selected specs, in the order of ``assets``."""
        keys = self.resolve(assets)
        return [spec for spec in assets if spec.key in keys]


class _Graph:
    """The assets being selected from, with their up- and downstream edges."""

    def __init__(self, assets: Iterable[AssetSpec]) -> None:
        self.specs: dict[AssetKey, AssetSpec] = {spec.key: spec for spec in assets}
        self.all = frozenset(self.specs)
        self.parents: dict[AssetKey, tuple[AssetKey, ...]] = {}
        self.children: dict[AssetKey, list[AssetKey]] = {key: [] for key in self.specs}
        for key, spec in self.specs.items():
            parents = tuple(d for d in spec.deps if d in self.specs)
            self.parents[key] = parents
            for parent in parents:
                self.children[parent].append(key)

    def matching(self, predicate: Callable[[AssetSpec], bool]) -> frozenset[AssetKey]:
        return frozenset(key for key, spec in self.specs.items() if predicate(spec))

    def walk(
        self, start: frozenset[AssetKey], edges: Mapping[AssetKey, Sequence[AssetKey]], depth: int
    ) -> frozenset[AssetKey]:
        """``start`` and everything ``depth`` steps away along ``edges`` (-1: no limit)."""
        seen = set(start)
        frontier = list(start)
        while frontier and depth != 0:
            depth -= 1
            frontier = [n for key in frontier for n in edges[key] if n not in seen]
            seen.update(frontier)
        return frozenset(seen)


def _key_matcher(pattern: str) -> Callable[[AssetSpec], bool]:
    if "*" not in pattern:
        return lambda spec: spec.key.to_string() == pattern
    regex = re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)
    return lambda spec: regex.fullmatch(spec.key.to_string()) is not None


def _attribute(name: str, value: str, tag_value: str | None) -> Resolver:
    predicate: Callable[[AssetSpec], bool]
    if name == "key":
        predicate = _key_matcher(value)
    elif name == "group":
        predicate = lambda spec: spec.group_name == value  # noqa: E731
    elif name == "kind":
        predicate = lambda spec: value in spec.kinds  # noqa: E731
    elif name == "owner":
        predicate = lambda spec: value in spec.owners  # noqa: E731
    elif tag_value is None:
        predicate = lambda spec: value in spec.tags  # noqa: E731
    else:
        predicate = lambda spec: spec.tags.get(value) == tag_value  # noqa: E731
    return lambda graph: graph.matching(predicate)


class _Parser:
    """Recursive descent over the characters (values are context-dependent, so no lexer)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> Resolver:
        self._blank()
        if self.pos == len(self.text):
            self._fail("the selection is empty: expected an expression such as key:NAME")
        resolver = self._or()
        self._blank()
        if self.pos < len(self.text):
            self._fail(f"unexpected {self._found()}: expected 'and', 'or' or the end")
        return resolver

    # -- characters -----------------------------------------------------------------------
    def _fail(self, problem: str, pos: int | None = None) -> None:
        raise SelectionSyntaxError(self.text, (self.pos if pos is None else pos) + 1, problem)

    def _blank(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _peek(self, char: str) -> bool:
        return self.text.startswith(char, self.pos)

    def _found(self) -> str:
        if self.pos >= len(self.text):
            return "end of the selection"
        match = _WORD.match(self.text, self.pos)
        return repr(match.group() if match else self.text[self.pos])

    def _keyword(self, word: str) -> bool:
        """Consume ``word`` (any case) when it is a whole word here."""
        self._blank()
        match = _WORD.match(self.text, self.pos)
        if match and match.group().lower() == word:
            self.pos = match.end()
            return True
        return False

    def _expect(self, char: str, what: str) -> None:
        self._blank()
        if not self._peek(char):
            self._fail(f"expected {what}, found {self._found()}")
        self.pos += 1

    # -- grammar --------------------------------------------------------------------------
    def _or(self) -> Resolver:
        left = self._and()
        while self._keyword("or"):
            left = _union(left, self._operand("or", self._and))
        return left

    def _and(self) -> Resolver:
        left = self._not()
        while self._keyword("and"):
            left = _intersection(left, self._operand("and", self._not))
        return left

    def _operand(self, after: str, parse: Callable[[], Resolver]) -> Resolver:
        self._blank()
        if self.pos == len(self.text):
            self._fail(f"expected an expression after {after!r}")
        return parse()

    def _not(self) -> Resolver:
        if self._keyword("not"):
            inner = self._operand("not", self._not)
            return lambda graph: graph.all - inner(graph)
        return self._traversal()

    def _traversal(self) -> Resolver:
        self._blank()
        up = self._up_depth()
        if up is None and self._peek("*"):
            self.pos += 1
            return lambda graph: graph.all
        inner = self._primary()
        down = self._down_depth()
        if up is None and down is None:
            return inner
        return _traverse(inner, up, down)

    def _up_depth(self) -> int | None:
        """``+`` (-1: all levels) or ``N+`` before a selection; None when absent."""
        digits = _DIGITS.match(self.text, self.pos)
        end = digits.end() if digits else self.pos
        if not self.text.startswith("+", end):
            return None
        self.pos = end + 1
        self._blank()
        return int(digits.group()) if digits else -1

    def _down_depth(self) -> int | None:
        before = self.pos
        self._blank()
        if not self._peek("+"):
            self.pos = before
            return None
        self.pos += 1
        digits = _DIGITS.match(self.text, self.pos)
        if digits:
            self.pos = digits.end()
            return int(digits.group())
        return -1

    def _primary(self) -> Resolver:
        self._blank()
        start = self.pos
        if self._peek("("):
            self.pos += 1
            inner = self._operand("(", self._or)
            self._expect(")", "')' closing the '(' at column " + str(start + 1))
            return inner
        match = _WORD.match(self.text, self.pos)
        if match is None:
            self._fail(f"expected an expression such as key:NAME, found {self._found()}")
            raise AssertionError("unreachable")
        name = match.group()
        self.pos = match.end()
        lowered = name.lower()
        if lowered in FUNCTIONS and self._peek("("):
            self.pos += 1
            inner = self._operand(f"{name}(", self._or)
            self._expect(")", f"')' closing {name}( at column {start + 1}")
            return _roots(inner) if lowered == "roots" else _sinks(inner)
        if not self._peek(":"):
            if lowered in _KEYWORDS:
                self._fail(f"expected an expression before {name!r}", start)
            self._fail(
                f"expected an attribute before {name!r}, e.g. key:{name} "
                f"(attributes: {', '.join(ATTRIBUTES)})",
                start,
            )
        if lowered not in ATTRIBUTES:
            self._fail(f"unknown attribute {name!r} (supported: {', '.join(ATTRIBUTES)})", start)
        self.pos += 1
        value = self._value(lowered)
        tag_value = None
        if lowered == "tag" and self._peek("="):
            self.pos += 1
            tag_value = self._value("tag value")
        return _attribute(lowered, value, tag_value)

    def _value(self, attribute: str) -> str:
        start = self.pos
        if self._peek('"'):
            end = self.text.find('"', start + 1)
            if end < 0:
                self._fail("unterminated quoted value: expected a closing '\"'", start)
            self.pos = end + 1
            value = self.text[start + 1 : end]
        else:
            while self.pos < len(self.text) and self.text[self.pos] not in _VALUE_END:
                self.pos += 1
            value = self.text[start : self.pos]
            if not value:
                self._fail(f"expected a value after '{attribute}:', found {self._found()}")
        if "*" in value and attribute != "key":
            self._fail("wildcards (*) are only allowed in key: values", start)
        return value


def _union(left: Resolver, right: Resolver) -> Resolver:
    return lambda graph: left(graph) | right(graph)


def _intersection(left: Resolver, right: Resolver) -> Resolver:
    return lambda graph: left(graph) & right(graph)


def _traverse(inner: Resolver, up: int | None, down: int | None) -> Resolver:
    def resolve(graph: _Graph) -> frozenset[AssetKey]:
        start = inner(graph)
        result = start
        if up is not None:
            result = result | graph.walk(start, graph.parents, up)
        if down is not None:
            result = result | graph.walk(start, graph.children, down)
        return result

    return resolve


def _roots(inner: Resolver) -> Resolver:
    def resolve(graph: _Graph) -> frozenset[AssetKey]:
        selected = inner(graph)
        return frozenset(k for k in selected if not any(p in selected for p in graph.parents[k]))

    return resolve


def _sinks(inner: Resolver) -> Resolver:
    def resolve(graph: _Graph) -> frozenset[AssetKey]:
        selected = inner(graph)
        return frozenset(k for k in selected if not any(c in selected for c in graph.children[k]))

    return resolve
