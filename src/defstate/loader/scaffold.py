"""``defstate init`` and ``defstate scaffold``: new projects, components and defs.yaml files
that work at once (like ``dg scaffold`` and ``dlt init``). Nothing existing is overwritten."""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from typing import Any

import yaml

from defstate.components.catalog import AttributeInfo, ComponentTypeInfo
from defstate.errors import UsageError
from defstate.loader.component_types import get_component_type
from defstate.loader.discovery import DEFS_YAML
from defstate.loader.project import load_project_config


def package_name(text: str) -> str:
    """A Python package name from a folder or project name (``My-Project`` -> ``my_project``)."""
    name = re.sub(r"\W+", "_", text.strip().lower()).strip("_") or "project"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = f"project_{name}"
    return name


def snake_case(class_name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()


def _write_new(files: dict[Path, str]) -> list[Path]:
    existing = [p for p in files if p.exists()]
    if existing:
        raise UsageError(
            f"{', '.join(str(p) for p in existing)} already "
            f"{'exists' if len(existing) == 1 else 'exist'}: nothing was written"
        )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)


def init_project(directory: Path | str, name: str | None = None) -> list[Path]:
    """Create a working project in ``directory`` (created if missing): ``pyproject.toml``
    with ``[tool.defstate]``, a package with an example state-backed component, its
    ``defs.yaml``, the example's external data and a ``.gitignore``. Returns the files."""
    root = Path(directory).resolve()
    package = package_name(name or root.name)
    if (root / "pyproject.toml").exists():
        raise UsageError(
            f"{root / 'pyproject.toml'} already exists: add a [tool.defstate] table to it "
            "instead (see the README's Project format)"
        )
    files = {
        root / "pyproject.toml": _PYPROJECT.format(name=name or root.name, package=package),
        root / ".gitignore": _GITIGNORE,
        root / package / "__init__.py": "",
        root / package / "components.py": _EXAMPLE_COMPONENT,
        root / package / "defs" / "tables" / DEFS_YAML: _EXAMPLE_DEFS.format(package=package),
        root / "external" / "tables.json": _EXAMPLE_TABLES,
    }
    return _write_new(files)


def scaffold_component(
    class_name: str, project_root: Path | str | None = None, path: Path | str | None = None
) -> tuple[Path, str]:
    """Write a state-backed component skeleton; returns the file and its ``type:`` name.

    Default file: ``<package>/<snake_name>.py`` where ``<package>`` holds the defs folder
    (or is named after the project).
    """
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise UsageError(f"{class_name!r} is not a Python class name")
    config = load_project_config(project_root)
    if path is None:
        package = _project_package(config.root, config.defs_dir)
        target = config.root / package / f"{snake_case(class_name)}.py"
    else:
        target = Path(path) if Path(path).is_absolute() else config.root / path
    module = ".".join(target.relative_to(config.root).with_suffix("").parts)
    key = class_name.removesuffix("Component") or class_name
    _write_new({target: _COMPONENT_SKELETON.format(name=class_name, key=key)})
    init = target.parent / "__init__.py"
    if target.parent != config.root and not init.exists():
        init.write_text("")
    return target, f"{module}.{class_name}"


def _project_package(root: Path, defs_dir: Path) -> str:
    try:
        parts = defs_dir.relative_to(root).parts
    except ValueError:
        parts = ()
    if len(parts) > 1 and (root / parts[0] / "__init__.py").exists():
        return parts[0]
    return package_name(root.name)


def scaffold_defs(
    type_name: str, path: str, project_root: Path | str | None = None
) -> tuple[Path, ComponentTypeInfo]:
    """Write ``<defs_dir>/<path>/defs.yaml`` for ``type_name``: required attributes with
    placeholders to fill in, optional ones commented out with their defaults."""
    config = load_project_config(project_root)
    info = get_component_type(type_name, config.root)
    folder = (config.defs_dir / path).resolve()
    if not folder.is_relative_to(config.defs_dir.resolve()):
        raise UsageError(f"{path!r} is outside the defs folder {config.defs_dir}")
    target = folder / DEFS_YAML
    _write_new({target: defs_yaml_text(info)})
    return target, info


def defs_yaml_text(info: ComponentTypeInfo) -> str:
    """A ``defs.yaml`` for ``info``, listing every attribute."""
    lines = []
    if info.summary:
        lines.append(f"# {info.summary}")
    lines += [f"type: {info.name}", "attributes:"]
    ordered = sorted(info.attributes, key=lambda a: (not a.required, a.name == "defs_state"))
    for attribute in ordered:
        lines.extend(_attribute_lines(attribute))
    if not info.attributes:
        lines[-1] = "attributes: {}"
    return "\n".join(lines) + "\n"


_PLACEHOLDERS = {"str": "TODO", "int": 0, "float": 0.0, "bool": False}


def _attribute_lines(attribute: AttributeInfo) -> list[str]:
    if attribute.required:
        value = _PLACEHOLDERS.get(attribute.type)
        if value is None:
            value = [] if attribute.schema.get("type") == "array" else {}
        return [f"  {_yaml_line(attribute.name, value)}  # required: {attribute.type}"]
    rendered = _yaml_line(attribute.name, attribute.default)
    first, *rest = rendered.splitlines()
    return [f"  # {first}  # {attribute.type}", *(f"  # {line}" for line in rest)]


def _yaml_line(name: str, value: Any) -> str:
    text: str = yaml.safe_dump({name: value}, default_flow_style=False, sort_keys=False)
    return text.rstrip("\n")


_PYPROJECT = """\
[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["defstate"]

[tool.defstate]
defs_dir = "{package}/defs"
"""

_GITIGNORE = """\
.venv/
__pycache__/
*.pyc
# state baked into builds lives in <defs>/.local_defs_state/ (it has its own .gitignore)
"""

_EXAMPLE_DEFS = """\
# One component instance. `defstate state refresh` writes its state; `defstate list defs`
# builds its assets from that state.
type: {package}.components.TableCatalogComponent
attributes:
  catalog_path: "{{{{ project_root }}}}/external/tables.json"
  group_name: example
  defs_state:
    management_type: LOCAL_FILESYSTEM
    refresh_if_dev: true
"""

_EXAMPLE_TABLES = """\
{
  "tables": [
    {"name": "raw/orders", "upstream": []},
    {"name": "raw/customers", "upstream": []},
    {"name": "marts/revenue", "upstream": ["raw/orders", "raw/customers"]}
  ]
}
"""

_EXAMPLE_COMPONENT = '''\
"""An example state-backed component: a table catalog (here a JSON file standing in for an
API or a warehouse's information schema) becomes one asset per table."""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from defstate import AssetSpec, ComponentLoadContext, Definitions, StateBackedComponent


@attrs.define(kw_only=True)
class TableCatalogComponent(StateBackedComponent):
    """One asset per table of a JSON catalog; ``upstream`` tables become deps."""

    catalog_path: str
    group_name: str = "example"

    def get_defs_state_key(self) -> str:
        return f"TableCatalog[{self.group_name}]"

    def write_state_to_path(self, state_path: Path) -> None:
        # The slow part (an API call, a database query) runs here, rarely.
        tables = json.loads(Path(self.catalog_path).read_text())["tables"]
        state_path.write_text(json.dumps(tables, indent=1, sort_keys=True))

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        if state_path is None:  # not refreshed yet: no assets, not an error
            return Definitions()
        tables = json.loads(state_path.read_text())
        return Definitions(
            [
                AssetSpec(key=t["name"], deps=t["upstream"], group_name=self.group_name)
                for t in tables
            ]
        )
'''

_COMPONENT_SKELETON = '''\
"""{name}: a state-backed component (see the defstate README, "Writing a component")."""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from defstate import AssetSpec, ComponentLoadContext, Definitions, StateBackedComponent


@attrs.define(kw_only=True)
class {name}(StateBackedComponent):
    """Describe what this component turns into assets (shown by `list component-types`)."""

    # Attributes: the fields a defs.yaml entry sets, checked against these type hints.
    names: list[str] = attrs.field(factory=list)
    group_name: str | None = None

    def get_defs_state_key(self) -> str:
        return f"{key}[{{self.group_name or 'default'}}]"

    def write_state_to_path(self, state_path: Path) -> None:
        # Fetch from the external system here (slow, rare); write a file or a directory.
        # This skeleton stores its own `names` attribute.
        state_path.write_text(json.dumps(sorted(self.names)))

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        if state_path is None:  # never refreshed yet: valid, empty definitions
            return Definitions()
        names = json.loads(state_path.read_text())
        return Definitions([AssetSpec(key=name, group_name=self.group_name) for name in names])
'''
