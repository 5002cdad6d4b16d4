"""``DefstateProjectComponent``: a dg project includes a defstate project from a defs.yaml."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from defstate.contrib.dagster._dagster_private import current_load_context
from defstate.contrib.dagster.adapter import build_for_load


class DefstateProjectComponent(dg.Component, dg.Model, dg.Resolvable):
    """The assets of a defstate project, with defstate keeping their state's lifecycle.

    .. code-block:: yaml

        # src/my_dg_project/defs/catalog/defs.yaml
        type: defstate.contrib.dagster.DefstateProjectComponent
        attributes:
          project: ../../../../catalog_project   # relative to this defs.yaml's folder

    ``project`` defaults to the dg project's root (a ``pyproject.toml`` holding both
    ``[tool.dg]`` and ``[tool.defstate]``). ``normalize: true`` applies defstate's documented
    rules for values Dagster rejects instead of failing. The pin of each load travels to run
    workers in Dagster's reconstruction metadata, named after this component's path.
    """

    project: str | None = None
    normalize: bool = False

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        root = context.project_root if self.project is None else context.path / self.project
        try:
            name = context.path.relative_to(context.project_root).as_posix()
        except ValueError:
            name = context.path.as_posix()
        return build_for_load(
            Path(root).resolve(), current_load_context(), normalize=self.normalize, pin_name=name
        )
