"""The one place defstate uses Dagster's private API.

Dagster 1.13 carries a code location's *reconstruction metadata* from its initialization load
(the code server) to every reconstruction (run workers, step workers, sensors' processes) in
``RepositoryLoadData``. ``Definitions.with_reconstruction_metadata`` is public, but in 1.13 what
it attaches reaches only ``Definitions.metadata``: the data that travels is what the load
context collects (``DefinitionsLoadContext.add_to_pending_reconstruction_metadata``), and the
only reader is ``DefinitionsLoadContext.reconstruction_metadata``. Dagster's own
``StateBackedComponent`` uses the same private class. Everything private is touched in
:func:`current_load_context`, and ``tests/test_dagster_private_api.py`` fails with a clear
message when a Dagster release changes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import attrs

from defstate.errors import DefstateError

# What Dagster's `dagster dev` and every `dg` command set (dagster._utils.env.using_dagster_dev).
DAGSTER_DEV_ENV = "DAGSTER_IS_DEV_CLI"


class DagsterApiChangedError(DefstateError):
    """The installed Dagster no longer has the private API this adapter relies on."""


@attrs.frozen
class DagsterLoadContext:
    """What defstate needs from the Dagster load in progress.

    ``reconstruction``: Dagster is rebuilding a code location it initialized before (a run
    worker, for example), and ``reconstruction_metadata`` holds what the initialization
    recorded. ``record(key, value)`` adds to what this initialization records. ``dev``: the
    load runs under ``dagster dev`` or a ``dg`` command.
    """

    reconstruction: bool
    reconstruction_metadata: Mapping[str, str]
    record: Callable[[str, str], None]
    dev: bool


def current_load_context() -> DagsterLoadContext:
    """The Dagster load in progress (an initialization when none is: Dagster's own default)."""
    import dagster

    try:
        from dagster._core.definitions.definitions_load_context import (
            DefinitionsLoadContext,
            DefinitionsLoadType,
        )

        context = DefinitionsLoadContext.get()
        reconstruction = context.load_type == DefinitionsLoadType.RECONSTRUCTION
        metadata = dict(context.reconstruction_metadata) if reconstruction else {}
        record = context.add_to_pending_reconstruction_metadata
    except (ImportError, AttributeError) as exc:
        raise DagsterApiChangedError(
            f"dagster {dagster.__version__} changed the private DefinitionsLoadContext API that "
            f"carries defstate's pin to run workers ({type(exc).__name__}: {exc}); install a "
            "Dagster release in the range defstate[dagster] pins"
        ) from None
    return DagsterLoadContext(
        reconstruction=reconstruction,
        reconstruction_metadata={k: v for k, v in metadata.items() if isinstance(v, str)},
        record=record,
        dev=bool(os.environ.get(DAGSTER_DEV_ENV)),
    )
