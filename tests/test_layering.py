"""Where concepts live: storages say what they can do, and layers import downwards only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import defstate
from defstate.state_storage.base import StateStorage
from defstate.state_storage.management import ManagementType
from defstate.state_storage.registry import storage_class

PACKAGE = Path(defstate.__file__).parent
CAPABILITIES = (
    "refreshed_at_initialization",
    "remote",
    "shared",
    "reads_old_versions",
    "keeps_versions",
    "uses_leases",
)


def _modules(folder: str = "") -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("management_type", list(ManagementType))
def test_every_management_type_has_a_storage_class_declaring_its_capabilities(
    management_type: ManagementType,
) -> None:
    cls: type[StateStorage] = storage_class(management_type)
    assert cls.management_type is management_type
    for name in CAPABILITIES:
        assert isinstance(getattr(cls, name), bool), (cls, name)
    assert callable(cls.for_project)


def test_state_storage_imports_nothing_above_it() -> None:
    above = ("defstate.loader", "defstate.cli", "defstate.server", "defstate.components")
    above += ("defstate.contrib",)
    for path in _modules("state_storage"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(above), (path.name, node.module)


def test_no_code_outside_state_storage_branches_on_a_management_type() -> None:
    """``x is ManagementType.LOCAL_FILESYSTEM`` and ``isinstance(s, LocalStateStorage)`` belong
    in state_storage/; elsewhere callers ask the storage's capabilities."""
    storage_classes = {"LocalStateStorage", "VersionedStateStorage", "SnapshotStateStorage"}
    found = []
    for path in _modules():
        if path.parent.name == "state_storage":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for part in [node.left, *node.comparators]:
                    if (
                        isinstance(part, ast.Attribute)
                        and isinstance(part.value, ast.Name)
                        and part.value.id == "ManagementType"
                    ):
                        found.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                if names & storage_classes:
                    found.append(f"{path.name}:{node.lineno}")
    assert found == []


def test_every_management_type_has_a_display_label() -> None:
    """Tables show the type's own label; no renderer keeps a map keyed by the type's name."""
    from defstate.cli.render import management_name

    labels = {m: m.label for m in ManagementType}
    assert sorted(labels.values()) == ["local", "snapshot", "versioned"]
    for member, label in labels.items():
        assert management_name(member) == label
        assert management_name(member.value, wide=True) == member.value
