"""The ``translation:`` block: templates over node fields, rendered when definitions are built.

A template is text with ``{{ node.<field> }}`` and ``{{ spec.<field> }}`` expressions, as in
Dagster's ``translation:``. ``node`` is the dbt node (``manifest.json`` field names:
``node.name``, ``node.config.schema``, ``node.fqn[1]``, ``node.meta.owner``); ``spec`` is
what the default translator (or a subclass hook) made of it (``spec.key`` as ``a/b`` text,
``spec.group_name``, ``spec.description``, ``spec.code_version``). Only field lookups are
evaluated, nothing else; a field the node does not have renders as the empty string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from defstate.errors import ProjectError

_EXPRESSION: Final = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_ROOT: Final = re.compile(r"\s*(node|spec)")
_STEP: Final = re.compile(r"\s*(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(-?\d+|'[^']*'|\"[^\"]*\")\s*\])")


class TranslationTemplateError(ProjectError, ValueError):
    """A ``translation:`` template that is not ``{{ node.field }}``/``{{ spec.field }}`` text."""


Step = str | int


@attrs.frozen
class Template:
    """A parsed template: literal text and field paths, alternating."""

    text: str
    parts: tuple[str | tuple[str, tuple[Step, ...]], ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        parts: list[str | tuple[str, tuple[Step, ...]]] = []
        position = 0
        for match in _EXPRESSION.finditer(text):
            if match.start() > position:
                parts.append(text[position : match.start()])
            parts.append(_parse_expression(match.group(1)))
            position = match.end()
        if position < len(text):
            parts.append(text[position:])
        return cls(text, tuple(parts))

    def render(self, scope: Mapping[str, Any]) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            root, steps = part
            value = _lookup(scope.get(root), steps)
            out.append(_text(value))
        return "".join(out)


def _parse_expression(expression: str) -> tuple[str, tuple[Step, ...]]:
    root = _ROOT.match(expression)
    if root is None:
        raise TranslationTemplateError(
            f"unsupported template {{{{{expression}}}}}: use {{{{ node.<field> }}}} or "
            "{{ spec.<field> }}"
        )
    steps: list[Step] = []
    position = root.end()
    while position < len(expression.rstrip()):
        step = _STEP.match(expression, position)
        if step is None:
            raise TranslationTemplateError(
                f"unsupported template {{{{{expression}}}}}: only field lookups such as "
                "node.config.schema or node.fqn[1] are evaluated"
            )
        name, index = step.groups()
        if name is not None:
            steps.append(name)
        elif index[0] in "'\"":
            steps.append(index[1:-1])
        else:
            steps.append(int(index))
        position = step.end()
    return root.group(1), tuple(steps)


def _lookup(value: Any, steps: tuple[Step, ...]) -> Any:
    for step in steps:
        if isinstance(step, int) and isinstance(value, (list, tuple)):
            value = value[step] if -len(value) <= step < len(value) else None
        elif isinstance(step, str) and isinstance(value, Mapping):
            value = value.get(step)
        else:
            return None
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _template(value: str | None) -> Template | None:
    return None if value is None else Template.parse(value)


@attrs.frozen
class DbtTranslation:
    """``translation:`` in a ``defs.yaml``: each field, when set, replaces what the default
    translator gives (``key`` is ``a/b`` text or a list of parts; ``tags`` and ``metadata``
    are added to the defaults)."""

    key: str | list[str] | None = None
    group_name: str | None = None
    owners: list[str] | None = None
    tags: dict[str, str] | None = None
    kinds: list[str] | None = None
    description: str | None = None
    code_version: str | None = None
    metadata: dict[str, str] | None = None

    def compile(self) -> CompiledTranslation:
        """Parse every template once (raises :class:`TranslationTemplateError`)."""
        key: tuple[Template, ...] | None = None
        if isinstance(self.key, str):
            key = (Template.parse(self.key),)
        elif self.key is not None:
            key = tuple(Template.parse(part) for part in self.key)
        return CompiledTranslation(
            key=key,
            key_is_path=isinstance(self.key, str),
            group_name=_template(self.group_name),
            owners=None if self.owners is None else tuple(map(Template.parse, self.owners)),
            tags=None
            if self.tags is None
            else tuple((Template.parse(k), Template.parse(v)) for k, v in self.tags.items()),
            kinds=None if self.kinds is None else tuple(map(Template.parse, self.kinds)),
            description=_template(self.description),
            code_version=_template(self.code_version),
            metadata=None
            if self.metadata is None
            else tuple((k, Template.parse(v)) for k, v in self.metadata.items()),
        )


@attrs.frozen
class CompiledTranslation:
    """A :class:`DbtTranslation` with parsed templates."""

    key: tuple[Template, ...] | None
    key_is_path: bool
    group_name: Template | None
    owners: tuple[Template, ...] | None
    tags: tuple[tuple[Template, Template], ...] | None
    kinds: tuple[Template, ...] | None
    description: Template | None
    code_version: Template | None
    metadata: tuple[tuple[str, Template], ...] | None

    def key_parts(self, scope: Mapping[str, Any]) -> list[str] | None:
        if self.key is None:
            return None
        rendered = [t.render(scope) for t in self.key]
        parts = rendered[0].split("/") if self.key_is_path else rendered
        return [p for p in parts if p]

    @staticmethod
    def optional(template: Template | None, scope: Mapping[str, Any]) -> str | None:
        if template is None:
            return None
        return template.render(scope) or None
