"""The project model of a load: state-backed instances grouped by the key they share.

A key's group decides its storage (all instances of a key must agree on the management
type) and who writes it (the first instance); selections by key name or glob pick groups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import attrs

from defstate.components.component import Component
from defstate.components.state_backed import StateBackedComponent
from defstate.errors import DefstateError, UnknownStateKeyError, UsageError
from defstate.loader.discovery import ComponentInstance, LoadProblem
from defstate.loader.storage import StateStorages
from defstate.state_storage.base import StateStorage
from defstate.state_storage.management import ManagementType


@attrs.frozen
class KeyGroup:
    """All component instances that share one state key; the first one writes it."""

    key: str
    instances: tuple[ComponentInstance[StateBackedComponent], ...]

    @property
    def writer(self) -> ComponentInstance[StateBackedComponent]:
        return self.instances[0]

    @property
    def management_type(self) -> ManagementType:
        return self.writer.component.defs_state.management_type

    @property
    def refresh_if_dev(self) -> bool:
        return any(i.component.defs_state.refresh_if_dev for i in self.instances)


def group_by_key(
    instances: Iterable[ComponentInstance[Component]],
) -> tuple[dict[str, KeyGroup], list[LoadProblem]]:
    """Group state-backed instances by key; instances of one key must agree on its strategy."""
    grouped: dict[str, list[ComponentInstance[StateBackedComponent]]] = {}
    errors: list[LoadProblem] = []
    for any_instance in instances:
        instance = any_instance.state_backed()
        key = any_instance.state_key
        if instance is None or key is None:
            continue
        members = grouped.setdefault(key, [])
        if members:
            first = members[0].component
            this = instance.component
            if first.defs_state.management_type != this.defs_state.management_type:
                errors.append(
                    LoadProblem(
                        f"state key {key!r} is used with management_type "
                        f"{this.defs_state.management_type.value} here and "
                        f"{first.defs_state.management_type.value} by {members[0].source}",
                        instance.location,
                        instance.source,
                        key,
                    )
                )
                continue
        members.append(instance)
    return {k: KeyGroup(k, tuple(v)) for k, v in grouped.items()}, errors


def key_matches(key: str, pattern: str) -> bool:
    """Glob match where only ``*`` and ``?`` are wildcards: brackets are common in keys
    (``DbtProject[shop]``), so ``List[*]`` means the literal ``List[`` + anything + ``]``."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, key, flags=re.DOTALL) is not None


@attrs.frozen
class Shard:
    """One of ``count`` disjoint shares of a project's keys (``index`` counts from 0).

    A key's share depends only on the key (the first 8 bytes of its sha256, modulo
    ``count``): every machine computes the same split without talking to the others, the
    shares of ``0/N`` … ``N-1/N`` cover every key exactly once, and adding a key never moves
    the others to another share. Index 0 first matches Kubernetes' ``JOB_COMPLETION_INDEX``
    and Airflow's ``map_index``.
    """

    index: int
    count: int

    def __attrs_post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(
                f"shard {self.index}/{self.count}: expected I/N with N >= 1 and 0 <= I < N"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` (e.g. ``"0/4"``); raises ``UsageError`` for anything else."""
        index, slash, count = text.strip().partition("/")
        if not slash or not index.isdigit() or not count.isdigit():
            raise UsageError(f"shard {text!r}: expected I/N, e.g. 0/4 (I counts from 0)")
        return cls(int(index), int(count))

    def contains(self, key: str) -> bool:
        # hashlib only when sharding: it is kept off the read path of every load
        import hashlib

        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def known_keys(keys: Iterable[str], most: int = 10) -> str:
    """``known keys: a, b, …`` for messages about a key: at most ``most`` names, so that an
    unknown key in a project of thousands stays a one-line error."""
    names = sorted(keys)
    if not names:
        return "known keys: none"
    shown = ", ".join(names[:most])
    if len(names) > most:
        shown += f", … ({len(names)} in all: `defstate list components` lists them)"
    return f"known keys: {shown}"


def select_groups(
    groups: dict[str, KeyGroup],
    keys: Sequence[str] = (),
    management_types: Sequence[ManagementType] = (),
    shard: Shard | None = None,
) -> list[KeyGroup]:
    """The groups named by ``keys`` (exact names or glob patterns) and ``management_types``,
    and of those, the ones in ``shard`` when given.

    Raises ``UnknownStateKeyError`` listing the known keys when a name matches nothing.
    """
    selected = list(groups.values())
    if keys:
        unknown = [
            k for k in keys if k not in groups and not any(key_matches(g, k) for g in groups)
        ]
        if unknown:
            raise UnknownStateKeyError(
                f"unknown state {'key' if len(unknown) == 1 else 'keys'}: {', '.join(unknown)} "
                f"({known_keys(groups)})"
            )
        selected = [g for g in selected if any(key_matches(g.key, k) for k in keys)]
    if management_types:
        selected = [g for g in selected if g.management_type in management_types]
    if shard is not None:
        selected = [g for g in selected if shard.contains(g.key)]
    return selected


def resolve_storages(
    groups: Iterable[KeyGroup], storages: StateStorages
) -> tuple[dict[str, StateStorage], list[LoadProblem]]:
    """Each group's storage by key; a storage that cannot be set up is an error of its key."""
    resolved: dict[str, StateStorage] = {}
    errors: list[LoadProblem] = []
    for group in groups:
        try:
            resolved[group.key] = storages.get(group.management_type, group.writer.source)
        except DefstateError as exc:
            errors.append(LoadProblem.for_instance(group.writer, exc))
    return resolved, errors
