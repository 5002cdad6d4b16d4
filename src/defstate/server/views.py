"""What the web UI and ``/defs`` ask of one load, computed once per load (no web framework).

A code location serves one load until it reloads, so the serialised ``/defs`` body, its gzip
form, the asset index and the lineage maps are built once per generation and shared by every
request: 20 000 assets are encoded once, not once per reader.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

from defstate.definitions import AssetKey, AssetSpec
from defstate.server.worker import WorkerLoad

DEFAULT_SEARCH_LIMIT = 300
MAX_SEARCH_LIMIT = 5000
MAX_LINEAGE_DEPTH = 10
MAX_LINEAGE_NODES = 400


class LoadViews:
    """Indexes over one load's document. Properties are computed on first use, then reused."""

    def __init__(self, load: WorkerLoad, boot_id: str) -> None:
        self.load = load
        self.generation = load.generation
        self.etag = f'"{boot_id}-{load.generation}"'
        self._lock = threading.Lock()

    # --- /defs -----------------------------------------------------------------------------
    @cached_property
    def defs_body(self) -> bytes:
        """The documented ``/defs`` answer, encoded once."""
        document = self.load.document
        return json.dumps(
            {
                "generation": self.generation,
                "assets": document.assets,
                "asset_checks": document.asset_checks,
                "state": document.state,
                "errors": document.errors,
            }
        ).encode()

    @cached_property
    def defs_gzip(self) -> bytes:
        # mtime=0: the same load compresses to the same bytes (one ETag per representation)
        return gzip.compress(self.defs_body, compresslevel=6, mtime=0)

    def defs_representation(self, accepts_gzip: bool) -> tuple[bytes, str, bool]:
        """``(body, etag, gzipped)`` for a client that does or does not accept gzip."""
        with self._lock:  # two first readers must not both encode 20 000 assets
            if accepts_gzip:
                return self.defs_gzip, self.etag[:-1] + '-gzip"', True
            return self.defs_body, self.etag, False

    # --- assets ----------------------------------------------------------------------------
    @cached_property
    def assets(self) -> list[Mapping[str, Any]]:
        """Assets ordered by group, component, key: the order of the Assets view."""
        return sorted(
            self.load.document.assets,
            key=lambda a: (a.get("group") or "", a.get("component") or "", a["key"]),
        )

    @cached_property
    def by_key(self) -> dict[str, Mapping[str, Any]]:
        return {a["key"]: a for a in self.load.document.assets}

    @cached_property
    def state_key_of_source(self) -> dict[str, str | None]:
        """Component source (``file:line``) -> its state key (None for plain components)."""
        return {row["source"]: row.get("key") for row in self.load.document.components}

    @cached_property
    def checks_by_asset(self) -> dict[str, list[Mapping[str, Any]]]:
        checks: dict[str, list[Mapping[str, Any]]] = {}
        for check in self.load.document.asset_checks:
            checks.setdefault(check["asset"], []).append(check)
        return checks

    def with_checks(self, asset: Mapping[str, Any]) -> dict[str, Any]:
        """The asset's document with its checks (``/defs`` lists checks apart)."""
        return {**asset, "checks": self.checks_by_asset.get(asset["key"], [])}

    @cached_property
    def _haystacks(self) -> list[str]:
        checks = self.checks_by_asset
        return [_haystack(asset, checks.get(asset["key"], ())) for asset in self.assets]

    @cached_property
    def _specs(self) -> list[AssetSpec]:
        """The assets as specs, for the selection syntax (what it matches on, no metadata)."""
        return [
            AssetSpec(
                key=AssetKey.from_string(a["key"]),
                deps=[AssetKey.from_string(d) for d in a.get("deps", ())],
                group_name=a.get("group"),
                kinds=a.get("kinds", ()),
                tags=a.get("tags") or {},
                owners=a.get("owners", ()),
            )
            for a in self.assets
        ]

    def _matching(self, query: str) -> list[Mapping[str, Any]]:
        """A selection (``group:x and kind:table``, ``+key:a/b``) or words to find."""
        if looks_like_selection(query):
            from defstate.selection import AssetSelection

            selection = AssetSelection.from_string(query)  # SelectionSyntaxError: bad syntax
            with self._lock:
                specs = self._specs
            keys = {key.to_string() for key in selection.resolve(specs)}
            return [asset for asset in self.assets if asset["key"] in keys]
        terms = query.lower().split()
        if not terms:
            return self.assets
        with self._lock:
            haystacks = self._haystacks
        return [
            asset
            for asset, text in zip(self.assets, haystacks, strict=True)
            if all(term in text for term in terms)
        ]

    def search(self, query: str, limit: int = DEFAULT_SEARCH_LIMIT) -> dict[str, Any]:
        """The assets ``query`` selects: an asset selection in Dagster's syntax
        (``defstate.selection``) when it uses one, else the assets whose key, group,
        component, kinds, owners, tags (``name=value``), description or check names contain
        every word of it (case-insensitive).

        Answers every matching group/component with its count, and the first ``limit``
        matching assets (with their checks) in view order.
        """
        matched = self._matching(query)
        limit = max(0, min(limit, MAX_SEARCH_LIMIT))
        sections: dict[tuple[str, str], dict[str, Any]] = {}
        for asset in matched:
            group, source = asset.get("group") or "", asset.get("component") or ""
            section = sections.get((group, source))
            if section is None:
                section = sections[(group, source)] = {
                    "group": asset.get("group"),
                    "component": asset.get("component"),
                    "state_key": self.state_key_of_source.get(source),
                    "count": 0,
                }
            section["count"] += 1
        return {
            "generation": self.generation,
            "query": query,
            "selection": looks_like_selection(query),
            "total": len(self.assets),
            "matched": len(matched),
            "sections": list(sections.values()),
            "assets": [self.with_checks(asset) for asset in matched[:limit]],
            "truncated": len(matched) > limit,
        }

    # --- lineage ---------------------------------------------------------------------------
    @cached_property
    def upstream(self) -> dict[str, tuple[str, ...]]:
        return {a["key"]: tuple(a.get("deps", ())) for a in self.load.document.assets}

    @cached_property
    def downstream(self) -> dict[str, list[str]]:
        children: dict[str, list[str]] = {}
        for key, deps in self.upstream.items():
            for dep in deps:
                children.setdefault(dep, []).append(key)
        return children

    def lineage(
        self, key: str, up: int = 2, down: int = 2, max_nodes: int = MAX_LINEAGE_NODES
    ) -> dict[str, Any]:
        """The neighbourhood of ``key``: assets up to ``up`` levels upstream and ``down``
        downstream, at most ``max_nodes`` of them, and the edges between them.

        Each node has its ``level`` (negative upstream) and how many of its neighbours were
        left out (``hidden_up``/``hidden_down``), so the UI can offer to expand there.
        """
        with self._lock:
            upstream, downstream = self.upstream, self.downstream
        up, down = (max(0, min(n, MAX_LINEAGE_DEPTH)) for n in (up, down))
        levels: dict[str, int] = {key: 0}
        truncated = self._walk(key, upstream, -1, up, levels, max_nodes)
        truncated |= self._walk(key, downstream, 1, down, levels, max_nodes)
        nodes = []
        for node_key, level in levels.items():
            asset = self.by_key.get(node_key)
            parents = upstream.get(node_key, ())
            children = downstream.get(node_key, ())
            nodes.append(
                {
                    "key": node_key,
                    "level": level,
                    "group": asset.get("group") if asset else None,
                    "kinds": asset.get("kinds", []) if asset else [],
                    "external": asset is None,  # a dep no component defines
                    "hidden_up": sum(1 for p in parents if p not in levels),
                    "hidden_down": sum(1 for c in children if c not in levels),
                }
            )
        edges = [
            [dep, node_key]
            for node_key in levels
            for dep in upstream.get(node_key, ())
            if dep in levels
        ]
        return {
            "generation": self.generation,
            "key": key,
            "up": up,
            "down": down,
            "nodes": sorted(nodes, key=lambda n: (n["level"], n["key"])),
            "edges": edges,
            "truncated": truncated,
        }

    @staticmethod
    def _walk(
        start: str,
        neighbours: Mapping[str, Iterable[str]],
        direction: int,
        depth: int,
        levels: dict[str, int],
        max_nodes: int,
    ) -> bool:
        """Breadth-first from ``start`` into ``levels``; True when ``max_nodes`` cut it off."""
        queue: deque[tuple[str, int]] = deque([(start, 0)])
        while queue:
            node, distance = queue.popleft()
            if distance == depth:
                continue
            for neighbour in sorted(neighbours.get(node, ())):
                if neighbour in levels:
                    continue
                if len(levels) >= max_nodes:
                    return True
                levels[neighbour] = direction * (distance + 1)
                queue.append((neighbour, distance + 1))
        return False


_SELECTION = re.compile(r"\b(key|group|tag|kind|owner):|\b(sinks|roots)\s*\(|\+|^\s*\*\s*$", re.I)


def looks_like_selection(query: str) -> bool:
    """Whether ``query`` uses the selection syntax (an ``attribute:``, ``+``, a function or
    ``*``), rather than words to find."""
    return bool(_SELECTION.search(query))


def _haystack(asset: Mapping[str, Any], checks: Iterable[Mapping[str, Any]]) -> str:
    parts: list[str] = [asset["key"], asset.get("group") or "", asset.get("component") or ""]
    parts += asset.get("kinds", [])
    parts += asset.get("owners", [])
    parts += [f"{name}={value}" for name, value in (asset.get("tags") or {}).items()]
    parts.append(asset.get("description") or "")
    parts += [str(check.get("name", "")) for check in checks]
    return "\n".join(parts).lower()
