"""Components: Python classes instantiated from ``defs.yaml`` entries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import attrs

from defstate.components.attributes import construct
from defstate.components.context import ComponentLoadContext
from defstate.definitions import Definitions


@attrs.define(kw_only=True)
class Component:
    """Base class of every component.

    Subclasses are attrs classes; their fields are the ``attributes:`` a ``defs.yaml`` entry
    may set, checked against the fields' type hints.
    """

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any], context: ComponentLoadContext) -> Self:
        """Build an instance from a ``defs.yaml`` entry's ``attributes:``.

        Override to post-process values with the context, e.g. make paths absolute::

            comp = super().from_attributes(attributes, context)
            return attrs.evolve(comp, project_dir=str(context.resolve_path(comp.project_dir)))
        """
        instance: Self = construct(cls, attributes)
        return instance

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        """Return this component's definitions."""
        raise NotImplementedError(f"{type(self).__name__} does not implement build_defs")
