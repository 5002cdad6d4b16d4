"""dbt's node selection syntax (``--select``, ``--exclude``, ``--selector``), over stored state.

Evaluated when definitions are built, without dbt: instances of one project that share a
state key can select different parts of it. What is supported is dbt's own grammar:

* a selection is space-separated criteria (union); a criterion is comma-joined terms
  (intersection); a term is ``[@][N+]method:value[+N]`` or ``[@][N+]value[+N]``;
* a value without a method is a path when it contains ``/`` (or ends in ``.sql``, ``.py``,
  ``.csv``: a file name), else an fqn;
* methods: ``fqn``, ``tag``, ``path``, ``file``, ``package``, ``resource_type``, ``config.X``,
  ``source``, ``test_type``, ``test_name``, ``group``, ``access``, ``version``; values may use
  shell wildcards (``*``, ``?``);
* graph operators: ``+x`` (ancestors), ``N+x``, ``x+`` (descendants), ``x+N``, ``@x``
  (descendants and all their ancestors);
* tests are selected *eagerly*, as dbt does by default: a test whose parent is selected is
  selected, and excluding a node excludes its tests;
* ``selector``: a named selector from ``selectors.yml`` (stored in the state), with ``union``,
  ``intersection``, ``exclude``, ``method``/``value``, ``parents``/``children`` (and
  ``_depth``) and ``childrens_parents``.

Methods that need artifacts of a run (``state:``, ``result:``, ``source_status:``) or
resources defstate does not store (``exposure:``, ``metric:``, ...) raise
:class:`DbtSelectionError` saying so.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, Final

from defstate.errors import ProjectError

_TERM = re.compile(
    r"^(?P<childrens_parents>@)?(?P<parents>(?P<parents_depth>\d*)\+)?"
    r"(?P<body>.*?)"
    r"(?P<children>\+(?P<children_depth>\d*))?$"
)
_FILE_SUFFIXES: Final = (".sql", ".py", ".csv")
_UNSUPPORTED: Final = frozenset(
    {
        "state",
        "result",
        "source_status",
        "exposure",
        "metric",
        "semantic_model",
        "saved_query",
        "unit_test",
        "wildcard",
    }
)

Node = Mapping[str, Any]


class DbtSelectionError(ProjectError, ValueError):
    """A ``select``/``exclude``/``selector`` that cannot be evaluated."""


class DbtGraph:
    """The nodes and sources of a project, with parent and child edges (built once)."""

    def __init__(self, nodes: Mapping[str, Node], project_name: str) -> None:
        self.nodes = nodes
        self.project_name = project_name
        self.parents: dict[str, tuple[str, ...]] = {}
        self.children: dict[str, list[str]] = {uid: [] for uid in nodes}
        for uid, node in nodes.items():
            parents = tuple(p for p in _depends_on(node) if p in nodes)
            self.parents[uid] = parents
            for parent in parents:
                self.children[parent].append(uid)

    def ancestors(self, start: Iterable[str], depth: int | None) -> set[str]:
        return _walk(start, self.parents, depth)

    def descendants(self, start: Iterable[str], depth: int | None) -> set[str]:
        return _walk(start, self.children, depth)

    def tests_of(self, selected: set[str]) -> set[str]:
        """Tests with at least one parent in ``selected`` (dbt's eager indirect selection)."""
        return {
            child
            for uid in selected
            for child in self.children.get(uid, ())
            if self.nodes[child].get("resource_type") == "test"
        }


def _depends_on(node: Node) -> Sequence[str]:
    depends = node.get("depends_on")
    return depends.get("nodes") or () if isinstance(depends, Mapping) else ()


def _walk(start: Iterable[str], edges: Mapping[str, Sequence[str]], depth: int | None) -> set[str]:
    found: set[str] = set()
    frontier = set(start)
    level = 0
    while frontier and (depth is None or level < depth):
        following = {n for uid in frontier for n in edges.get(uid, ())} - found
        found |= following
        frontier = following
        level += 1
    return found


def select_unique_ids(
    graph: DbtGraph,
    *,
    select: str = "fqn:*",
    exclude: str = "",
    selector: str = "",
    selectors: Mapping[str, Any] | None = None,
) -> set[str]:
    """The unique ids (nodes, tests and sources) a dbt selection picks, as ``dbt ls`` would."""
    if selector:
        definition = _mapping((selectors or {}).get(selector)).get("definition")
        if definition is None:
            known = ", ".join(sorted(selectors or {})) or "none"
            raise DbtSelectionError(f"no selector named {selector!r} (selectors: {known})")
        chosen = _selector_definition(graph, definition)
    elif select.strip() in ("", "fqn:*", "*"):
        chosen = set(graph.nodes)
    else:
        chosen = _with_tests(graph, _select_string(graph, select))
    if exclude.strip():
        chosen -= _with_tests(graph, _select_string(graph, exclude))
    return chosen


def _with_tests(graph: DbtGraph, selected: set[str]) -> set[str]:
    return selected | graph.tests_of(selected)


def _select_string(graph: DbtGraph, text: str) -> set[str]:
    result: set[str] = set()
    for criterion in text.split():
        terms = [t for t in criterion.split(",") if t]
        matched = _term(graph, terms[0])
        for term in terms[1:]:
            matched &= _term(graph, term)
        result |= matched
    return result


def _term(graph: DbtGraph, text: str) -> set[str]:
    match = _TERM.match(text)
    if match is None or not match.group("body"):
        raise DbtSelectionError(f"invalid dbt selection term {text!r}")
    body = match.group("body")
    method, _, value = body.partition(":")
    if not value:
        method, value = _default_method(body), body
    parents_depth = match.group("parents_depth")
    children_depth = match.group("children_depth")
    return _traverse(
        graph,
        _method(graph, method, value),
        parents=match.group("parents") is not None,
        parents_depth=int(parents_depth) if parents_depth else None,
        children=match.group("children") is not None,
        children_depth=int(children_depth) if children_depth else None,
        childrens_parents=match.group("childrens_parents") is not None,
    )


def _traverse(
    graph: DbtGraph,
    matched: set[str],
    *,
    parents: bool,
    parents_depth: int | None,
    children: bool,
    children_depth: int | None,
    childrens_parents: bool,
) -> set[str]:
    result = set(matched)
    if childrens_parents:
        descendants = matched | graph.descendants(matched, None)
        return descendants | graph.ancestors(descendants, None)
    if parents:
        result |= graph.ancestors(matched, parents_depth)
    if children:
        result |= graph.descendants(matched, children_depth)
    return result


def _default_method(value: str) -> str:
    if "/" in value or "\\" in value:
        return "path"
    if value.endswith(_FILE_SUFFIXES):
        return "file"
    return "fqn"


def _method(graph: DbtGraph, method: str, value: str) -> set[str]:
    name, _, argument = method.partition(".")
    if name in _UNSUPPORTED:
        raise DbtSelectionError(
            f"the dbt selection method {name!r} is not supported by defstate (it needs run "
            "artifacts or resources that are not stored in state)"
        )
    if name == "config":
        if not argument:
            raise DbtSelectionError(f"config selection needs a key: config.<key>:{value}")
        return {uid for uid, node in graph.nodes.items() if _config_matches(node, argument, value)}
    matcher = _MATCHERS.get(name)
    if matcher is None or argument:
        known = ", ".join(sorted([*_MATCHERS, "config.<key>"]))
        raise DbtSelectionError(f"unknown dbt selection method {method!r} (known: {known})")
    return {uid for uid, node in graph.nodes.items() if matcher(graph, node, value)}


def _like(text: Any, pattern: str) -> bool:
    return isinstance(text, str) and fnmatch.fnmatchcase(text, pattern)


def _fqn(graph: DbtGraph, node: Node, value: str) -> bool:
    if value == "*":
        return True
    fqn = [str(part) for part in node.get("fqn") or ()]
    if not fqn:
        return False
    parts = value.split(".")
    if node.get("version") is not None and len(fqn) >= 2:
        if fqn[-2] == value or fqn[-2:] == parts[-2:]:  # `name` or `name.v2`
            return True
    elif fqn[-1] == value:
        return True
    flat = [piece for part in fqn for piece in part.split(".")]
    if len(flat) < len(parts):
        return False
    for index, part in enumerate(parts):
        if "*" in part or "?" in part:
            return fnmatch.fnmatchcase(".".join(flat[index:]), ".".join(parts[index:]))
        if flat[index] != part:
            return False
    return True


def _tag(graph: DbtGraph, node: Node, value: str) -> bool:
    return any(_like(tag, value) for tag in node.get("tags") or ())


def _path(graph: DbtGraph, node: Node, value: str) -> bool:
    original = node.get("original_file_path")
    if not isinstance(original, str):
        return False
    path = PurePosixPath(original)
    wanted = value.rstrip("/").replace("\\", "/")
    candidates = [str(path), *(str(p) for p in path.parents if str(p) != ".")]
    return any(fnmatch.fnmatchcase(c, wanted) for c in candidates)


def _file(graph: DbtGraph, node: Node, value: str) -> bool:
    original = node.get("original_file_path")
    if not isinstance(original, str):
        return False
    path = PurePosixPath(original)
    return _like(path.name, value) or _like(path.stem, value)


def _package(graph: DbtGraph, node: Node, value: str) -> bool:
    wanted = graph.project_name if value == "this" else value
    return _like(node.get("package_name"), wanted)


def _resource_type(graph: DbtGraph, node: Node, value: str) -> bool:
    return node.get("resource_type") == value


def _source(graph: DbtGraph, node: Node, value: str) -> bool:
    if node.get("resource_type") != "source":
        return False
    names = [node.get("package_name"), node.get("source_name"), node.get("name")]
    parts = value.split(".")
    if len(parts) > 3:
        return False
    # `source:s`, `source:s.t` or `source:package.s.t`
    candidates = names[1:2] if len(parts) == 1 else names[1:] if len(parts) == 2 else names
    return all(_like(n, p) for n, p in zip(candidates, parts, strict=True))


def _test_type(graph: DbtGraph, node: Node, value: str) -> bool:
    if node.get("resource_type") != "test":
        return False
    generic = bool(node.get("test_metadata"))
    if value in ("generic", "schema"):
        return generic
    if value in ("singular", "data"):
        return not generic
    raise DbtSelectionError(f"unknown test_type {value!r} (generic, singular)")


def _test_name(graph: DbtGraph, node: Node, value: str) -> bool:
    metadata = node.get("test_metadata")
    return isinstance(metadata, Mapping) and _like(metadata.get("name"), value)


def _group(graph: DbtGraph, node: Node, value: str) -> bool:
    return _like(_mapping(node.get("config")).get("group") or node.get("group"), value)


def _access(graph: DbtGraph, node: Node, value: str) -> bool:
    return node.get("access") == value


def _version(graph: DbtGraph, node: Node, value: str) -> bool:
    version, latest = node.get("version"), node.get("latest_version")
    if value == "none":
        return version is None
    if version is None or node.get("resource_type") != "model":
        return False
    if value == "latest":
        return str(version) == str(latest)
    if value in ("prerelease", "old"):
        if latest is None:
            return False
        newer = _version_key(version) > _version_key(latest)
        return newer if value == "prerelease" else _version_key(version) < _version_key(latest)
    raise DbtSelectionError(f"unknown version selector {value!r} (latest, prerelease, old, none)")


def _version_key(value: Any) -> tuple[float, str]:
    try:
        return (float(value), "")
    except (TypeError, ValueError):
        return (float("-inf"), str(value))


_MATCHERS: Final = {
    "fqn": _fqn,
    "tag": _tag,
    "path": _path,
    "file": _file,
    "package": _package,
    "resource_type": _resource_type,
    "source": _source,
    "test_type": _test_type,
    "test_name": _test_name,
    "group": _group,
    "access": _access,
    "version": _version,
}


def _config_matches(node: Node, key: str, value: str) -> bool:
    found: Any = _mapping(node.get("config"))
    for part in key.split("."):
        found = _mapping(found).get(part) if isinstance(found, Mapping) else None
    if isinstance(found, bool):
        return str(found).lower() == value.lower()
    if isinstance(found, list):
        return any(_like(str(item), value) for item in found)
    return found is not None and _like(str(found), value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# --- selectors.yml --------------------------------------------------------------------------


def _selector_definition(graph: DbtGraph, definition: Any) -> set[str]:
    if isinstance(definition, str):
        return _with_tests(graph, _select_string(graph, definition))
    if not isinstance(definition, Mapping):
        raise DbtSelectionError(f"invalid selector definition {definition!r}")
    for operator in ("union", "intersection"):
        if operator in definition:
            return _set_operation(graph, operator, definition[operator])
    if "method" in definition:
        return _selector_method(graph, definition)
    raise DbtSelectionError(f"invalid selector definition {dict(definition)!r}")


def _set_operation(graph: DbtGraph, operator: str, items: Any) -> set[str]:
    if not isinstance(items, list) or not items:
        raise DbtSelectionError(f"selector {operator!r} needs a list of definitions")
    included: list[set[str]] = []
    excluded: set[str] = set()
    for item in items:
        if isinstance(item, Mapping) and set(item) == {"exclude"}:
            for part in item["exclude"] or ():
                excluded |= _selector_definition(graph, part)
        else:
            included.append(_selector_definition(graph, item))
    if not included:
        return set()
    result = set.union(*included) if operator == "union" else set.intersection(*included)
    return result - excluded


def _selector_method(graph: DbtGraph, definition: Mapping[str, Any]) -> set[str]:
    method = str(definition["method"])
    value = str(definition.get("value", ""))
    matched = _traverse(
        graph,
        _method(graph, method, value),
        parents=bool(definition.get("parents")) or "parents_depth" in definition,
        parents_depth=_depth(definition.get("parents_depth")),
        children=bool(definition.get("children")) or "children_depth" in definition,
        children_depth=_depth(definition.get("children_depth")),
        childrens_parents=bool(definition.get("childrens_parents")),
    )
    if definition.get("indirect_selection", "eager") == "eager":
        matched = _with_tests(graph, matched)
    excluded: set[str] = set()
    for part in definition.get("exclude") or ():
        excluded |= _selector_definition(graph, part)
    return matched - excluded


def _depth(value: Any) -> int | None:
    return int(value) if value is not None else None
