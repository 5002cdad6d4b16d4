"""State-backed components: definitions built from state fetched at controlled moments."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Literal

import attrs

from defstate.components.component import Component
from defstate.components.context import ComponentLoadContext
from defstate.components.policies import RefreshGuard, RetryPolicy
from defstate.definitions import Definitions
from defstate.state_storage.management import ManagementType


@attrs.frozen(kw_only=True)
class DefsStateConfig:
    """The ``defs_state:`` attribute of every state-backed component.

    ``executor: process`` runs ``write_state_to_path`` in a pool of worker processes (one per
    core) instead of a thread, for refreshes that are CPU-bound in Python; the component must
    then be picklable (attrs components of importable classes are).
    """

    management_type: ManagementType = ManagementType.LOCAL_FILESYSTEM
    refresh_if_dev: bool = True
    key: str | None = None
    retry: RetryPolicy = attrs.field(factory=RetryPolicy.none)
    timeout: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    guard: RefreshGuard | None = None
    executor: Literal["thread", "process"] = "thread"


@attrs.frozen(kw_only=True)
class RefreshNotes:
    """What a refresh's record says besides its outcome: warnings (e.g. items skipped because
    they did not fit) and counts (``{"items": 250, "skipped_items": 2}``)."""

    warnings: tuple[str, ...] = ()
    counts: Mapping[str, int] = attrs.field(factory=dict)


@attrs.define(kw_only=True)
class StateBackedComponent(Component):
    """A component whose definitions come from stored state.

    Subclasses implement :meth:`write_state_to_path` (slow: fetch from the external system,
    sync or ``async def``) and :meth:`build_defs_from_state` (fast and pure).
    """

    defs_state: DefsStateConfig = attrs.field(factory=DefsStateConfig)

    def get_defs_state_key(self) -> str:
        """The default state key; the class name unless overridden."""
        return type(self).__name__

    @property
    def defs_state_key(self) -> str:
        """The key this instance's state is stored under (YAML ``key`` wins)."""
        return self.defs_state.key or self.get_defs_state_key()

    def write_state_to_path(self, state_path: Path) -> Awaitable[None] | None:
        """Fetch state and write it (a file or a directory) at ``state_path``.

        May be ``async def``; defstate awaits it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement write_state_to_path")

    def refresh_notes(self, state_path: Path) -> RefreshNotes:
        """Warnings and counts for the record of a refresh that wrote ``state_path``.

        Called in the refreshing process after ``write_state_to_path`` (whatever executor ran
        it), before the state is published; reads only the state. Default: nothing to note.
        """
        return RefreshNotes()

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        """Build definitions from state; ``state_path`` is ``None`` before the first refresh."""
        raise NotImplementedError(f"{type(self).__name__} does not implement build_defs_from_state")

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        return self.build_defs_from_state(context, context.state_path)
