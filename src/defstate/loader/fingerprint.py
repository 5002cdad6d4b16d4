"""Fingerprints of state keys, so dev mode refreshes only what changed.

A key's fingerprint covers, for every component instance using it, the rendered ``defs.yaml``
entry (type and attributes, after templates) and the source file of the component's class.
Editing either changes the fingerprint; editing an unrelated component does not.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping

from defstate.loader.groups import KeyGroup


def _module_digest(module_name: str) -> str:
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return ""


def key_fingerprints(groups: Mapping[str, KeyGroup]) -> dict[str, str]:
    """``{key: fingerprint}`` for every state key of a project."""
    fingerprints = {}
    modules: dict[str, str] = {}  # many keys share one component module: read it once
    for key, group in groups.items():
        digest = hashlib.sha256()
        for instance in group.instances:
            module = type(instance.component).__module__
            if module not in modules:
                modules[module] = _module_digest(module)
            entry = [instance.type_name, instance.attributes]
            digest.update(json.dumps(entry, sort_keys=True, default=str).encode())
            digest.update(modules[module].encode())
        fingerprints[key] = digest.hexdigest()
    return fingerprints
