"""Asset keys, asset specs, asset checks and the definitions a load produces.

The shapes follow Dagster's (``AssetSpec``, ``AssetCheckSpec``, ``AssetCheckKey``) so a
defstate definition maps one-to-one onto a Dagster one. Metadata keys Dagster users know keep
their names: :data:`COLUMN_SCHEMA_METADATA_KEY` and :data:`TABLE_NAME_METADATA_KEY`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from defstate.errors import AssetCheckError, DefstateError, DuplicateAssetError

_SEPARATOR = "/"

COLUMN_SCHEMA_METADATA_KEY: Final = "dagster/column_schema"
"""Metadata key of a table's columns: ``{"columns": [{"name", "type", "description"}...]}``."""

TABLE_NAME_METADATA_KEY: Final = "dagster/table_name"
"""Metadata key of the relation an asset is stored in, e.g. ``"db"."schema"."table"``."""


def _key_parts(path: Iterable[str]) -> tuple[str, ...]:
    parts = tuple(path)
    if not parts:
        raise ValueError("an asset key needs at least one part")
    for part in parts:
        if not isinstance(part, str) or not part:
            raise ValueError(f"asset key parts must be non-empty strings, got {part!r}")
        if _SEPARATOR in part:
            raise ValueError(f"asset key part {part!r} must not contain {_SEPARATOR!r}")
    return parts


@attrs.frozen(order=True, cache_hash=True)
class AssetKey:
    """The identity of an asset: a non-empty tuple of path parts, written ``a/b`` in text."""

    path: tuple[str, ...] = attrs.field(converter=_key_parts)

    @classmethod
    def from_string(cls, text: str) -> AssetKey:
        """Parse ``"a/b"`` into ``AssetKey(("a", "b"))``."""
        return cls(tuple(text.split(_SEPARATOR)))

    @classmethod
    def from_user(cls, value: AssetKey | str | Sequence[str]) -> AssetKey:
        """Accept what users write: an ``AssetKey``, ``"a/b"`` or ``["a", "b"]``."""
        if isinstance(value, AssetKey):
            return value
        if isinstance(value, str):
            return cls.from_string(value)
        return cls(tuple(value))

    def to_string(self) -> str:
        return _SEPARATOR.join(self.path)

    def __str__(self) -> str:
        return self.to_string()


@functools.lru_cache(maxsize=1 << 16)
def _key_from_text(text: str) -> AssetKey:
    # A project names the same keys over and over (as assets and as deps): parse each once.
    return AssetKey.from_string(text)


def _to_key(value: AssetKey | str | Sequence[str]) -> AssetKey:
    return _key_from_text(value) if isinstance(value, str) else AssetKey.from_user(value)


# The converters below return early for empty values: most fields of most specs are empty,
# and a project builds tens of thousands of specs.


def _to_keys(values: Iterable[AssetKey | str | Sequence[str]]) -> tuple[AssetKey, ...]:
    if not values:
        return ()
    return tuple(dict.fromkeys(map(_to_key, values)))


def _to_sorted_strings(values: Iterable[str]) -> tuple[str, ...]:
    if not values:
        return ()
    if type(values) is list and len(values) == 1 and type(values[0]) is str:  # the usual: one
        return (values[0],)
    return tuple(sorted(set(values)))


def _to_strings(values: Iterable[str]) -> tuple[str, ...]:
    if not values:
        return ()
    return tuple(map(str, values))


def _to_tags(values: Mapping[str, str]) -> dict[str, str]:
    if not values:
        return {}
    return {str(k): str(v) for k, v in values.items()}


_JSON_CHECK = json.JSONEncoder(allow_nan=False)
_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})


def _check_json(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value:
        return
    # The usual metadata, a flat dict of plain scalars, is valid JSON without encoding it
    # (a third of building an AssetSpec); anything else is encoded to find out.
    if type(value) is dict:
        for k, v in value.items():
            if type(k) is not str or type(v) not in _PLAIN_SCALARS:
                break
        else:
            return
    try:
        _JSON_CHECK.encode(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{attribute.name} must be JSON-serialisable: {exc}") from None


@attrs.frozen
class AssetSpec:
    """What defstate knows about one asset: its key, upstream deps and descriptive fields."""

    key: AssetKey = attrs.field(converter=_to_key)
    deps: tuple[AssetKey, ...] = attrs.field(default=(), converter=_to_keys)
    description: str | None = None
    group_name: str | None = None
    kinds: tuple[str, ...] = attrs.field(default=(), converter=_to_sorted_strings)
    tags: dict[str, str] = attrs.field(factory=dict, converter=_to_tags)
    owners: tuple[str, ...] = attrs.field(default=(), converter=_to_strings)
    metadata: dict[str, Any] = attrs.field(factory=dict, validator=_check_json)
    code_version: str | None = None
    """Changes when the code that computes the asset changes (Dagster's ``code_version``)."""

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON shape used by ``defstate list defs --json`` (without ``component``)."""
        # Written out, not through to_string() and copies of empty fields: a listing makes
        # one of these per asset.
        join = _SEPARATOR.join
        return {
            "key": join(self.key.path),
            "deps": [join(d.path) for d in self.deps] if self.deps else [],
            "group": self.group_name,
            "kinds": list(self.kinds),
            "tags": dict(self.tags) if self.tags else {},
            "owners": list(self.owners),
            "metadata": self.metadata,
            "description": self.description,
            "code_version": self.code_version,
        }


@attrs.frozen(order=True, cache_hash=True)
class AssetCheckKey:
    """The identity of an asset check: the asset it checks and its name, ``a/b:name`` in text."""

    asset_key: AssetKey = attrs.field(converter=_to_key)
    name: str

    def to_string(self) -> str:
        return f"{self.asset_key.to_string()}:{self.name}"

    def __str__(self) -> str:
        return self.to_string()


def _check_name(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"an asset check name must be a non-empty string, got {value!r}")


@attrs.frozen
class AssetCheckSpec:
    """A check of one asset (a dbt test, a row-count rule...), as Dagster's ``AssetCheckSpec``.

    ``asset`` is the asset it checks; ``additional_deps`` are other assets it reads (a dbt
    relationships test reads the referenced model too). A ``blocking`` check that fails stops
    the asset's downstream assets from running.
    """

    name: str = attrs.field(validator=_check_name)
    asset: AssetKey = attrs.field(converter=_to_key)
    description: str | None = None
    blocking: bool = False
    additional_deps: tuple[AssetKey, ...] = attrs.field(default=(), converter=_to_keys)
    metadata: dict[str, Any] = attrs.field(factory=dict, validator=_check_json)

    @property
    def key(self) -> AssetCheckKey:
        return AssetCheckKey(self.asset, self.name)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON shape used by ``defstate list defs --json`` (without ``component``)."""
        return {
            "asset": self.asset.to_string(),
            "name": self.name,
            "description": self.description,
            "blocking": self.blocking,
            "additional_deps": [d.to_string() for d in self.additional_deps],
            "metadata": self.metadata,
        }


def _to_specs(values: Iterable[AssetSpec]) -> tuple[AssetSpec, ...]:
    return tuple(values)


def _to_check_specs(values: Iterable[AssetCheckSpec]) -> tuple[AssetCheckSpec, ...]:
    return tuple(values)


@attrs.frozen
class Definitions:
    """The definitions of one component, or of a whole project after merging.

    Checks may target assets of another component; :func:`merge_definitions` reports a check
    whose asset no component defines.
    """

    assets: tuple[AssetSpec, ...] = attrs.field(default=(), converter=_to_specs)
    asset_checks: tuple[AssetCheckSpec, ...] = attrs.field(default=(), converter=_to_check_specs)

    @property
    def asset_keys(self) -> list[AssetKey]:
        return [spec.key for spec in self.assets]

    def get_asset(self, key: AssetKey | str | Sequence[str]) -> AssetSpec:
        wanted = AssetKey.from_user(key)
        for spec in self.assets:
            if spec.key == wanted:
                return spec
        raise KeyError(wanted.to_string())

    def get_asset_check(self, asset: AssetKey | str | Sequence[str], name: str) -> AssetCheckSpec:
        wanted = AssetCheckKey(asset, name)
        for check in self.asset_checks:
            if check.key == wanted:
                return check
        raise KeyError(wanted.to_string())


@attrs.frozen
class MergedDefinitions:
    """Definitions merged from several sources, remembering which source defined what."""

    definitions: Definitions
    sources: dict[AssetKey, str]
    errors: tuple[DefstateError, ...]
    check_sources: dict[AssetCheckKey, str] = attrs.field(factory=dict)


def merge_definitions(parts: Iterable[tuple[str, Definitions]]) -> MergedDefinitions:
    """Merge ``(source, definitions)`` pairs in order.

    An asset key defined twice keeps its first definition and yields a ``DuplicateAssetError``
    naming both sources (``source`` is typically ``defs/x/defs.yaml:3``). A check defined twice
    does the same with an ``AssetCheckError``; a check whose asset no source defines is left
    out with an ``AssetCheckError`` naming the check's source.
    """
    parts = list(parts)
    specs: list[AssetSpec] = []
    sources: dict[AssetKey, str] = {}
    errors: list[DefstateError] = []
    claim = sources.setdefault  # one lookup per asset: keys hash in Python
    for source, defs in parts:
        for spec in defs.assets:
            known = len(sources)
            owner = claim(spec.key, source)
            if len(sources) == known:
                errors.append(
                    DuplicateAssetError(
                        f"asset {spec.key} is defined twice: by {owner} and by {source}"
                    )
                )
                continue
            specs.append(spec)
    checks: dict[AssetCheckKey, AssetCheckSpec] = {}
    check_sources: dict[AssetCheckKey, str] = {}
    for source, defs in parts:
        for check in defs.asset_checks:
            key = check.key
            first = check_sources.get(key)
            if first is not None:
                twice = f"asset check {key} is defined twice: by {first} and by {source}"
                errors.append(AssetCheckError(twice))
            elif check.asset not in sources:
                errors.append(
                    AssetCheckError(
                        f"asset check {key} (defined by {source}) targets asset {check.asset}, "
                        "which no component defines"
                    )
                )
            else:
                checks[key] = check
                check_sources[key] = source
    merged = Definitions(tuple(specs), tuple(checks.values()))
    return MergedDefinitions(merged, sources, tuple(errors), check_sources)
