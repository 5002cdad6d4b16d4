"""Loading a project: configuration, discovery, refresh decisions, the load itself."""

from defstate.loader.discovery import ComponentInstance, LoadProblem
from defstate.loader.groups import Shard
from defstate.loader.load import (
    LoadResult,
    Project,
    RefreshReport,
    load_defs,
    open_project,
    refresh_state,
)
from defstate.loader.project import ProjectConfig, load_project_config
from defstate.loader.refresh import RefreshResult

__all__ = [
    "ComponentInstance",
    "LoadProblem",
    "LoadResult",
    "Project",
    "ProjectConfig",
    "RefreshReport",
    "RefreshResult",
    "Shard",
    "load_defs",
    "load_project_config",
    "open_project",
    "refresh_state",
]
