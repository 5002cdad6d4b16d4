"""Refreshes: calling ``write_state_to_path`` and publishing the result.

``results`` (what a refresh is asked and reports), ``executors`` (how
``write_state_to_path`` runs) and ``pipeline`` (the per-key chain: lock → join a running
refresh → retries → one attempt → guard → publish → record) and ``widening`` (many keys
on as few threads as they need). The key groups a refresh is
planned from live in :mod:`defstate.loader.groups`.
"""

from defstate.loader.refresh.pipeline import (
    RefreshTarget,
    is_retryable,
    plan_targets,
    run_refresh,
    run_refreshes,
)
from defstate.loader.refresh.results import (
    RefreshListener,
    RefreshOptions,
    RefreshResult,
    RefreshStatus,
)

__all__ = [
    "RefreshListener",
    "RefreshOptions",
    "RefreshResult",
    "RefreshStatus",
    "RefreshTarget",
    "is_retryable",
    "plan_targets",
    "run_refresh",
    "run_refreshes",
]
