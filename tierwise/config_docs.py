"""Render configuration models as Markdown tables, so the reference cannot drift from the code.

docs/configuration.md is generated from the pydantic models (scripts/configuration_docs.py);
a test fails when the page is older than the models. Every key shows its type, its default
and the description the model gives it; nested sections recurse with dotted keys.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from tierwise.config_errors import model_in


@dataclass(frozen=True)
class Section:
    """One table: the models' keys under a heading, with a paragraph saying where they go."""

    title: str
    intro: str
    model: type[BaseModel]
    prefix: str = ""


@dataclass(frozen=True)
class KeyRow:
    key: str
    kind: str
    default: str
    description: str


def render_page(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The whole page: a title, an intro, then one table per section."""
    out = [f"# {title}", "", intro.strip(), ""]
    for section in sections:
        out += [f"## {section.title}", "", section.intro.strip(), ""]
        out += ["| key | type | default | what it does |", "|---|---|---|---|"]
        for row in key_rows(section.model, section.prefix):
            cells = (f"`{row.key}`", row.kind, row.default, row.description)
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        out.append("")
    return "\n".join(out)


def key_rows(model: type[BaseModel], prefix: str = "") -> Iterator[KeyRow]:
    """Every key of `model`, depth first; a nested section gets a row, then its own keys."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        nested, container = _nested_model(field.annotation)
        description = field.description or (_first_line(nested.__doc__) if nested else "")
        yield KeyRow(
            key=key,
            kind=_type_name(field.annotation) + _bounds(field),
            default=_default(field, nested),
            description=description,
        )
        if nested is not None:
            yield from key_rows(nested, f"{key}{container}.")


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The section model inside an annotation, and how keys below it are written:
    `tiers[].name` for a list of sections, `cache.enabled` for one."""
    model = model_in(annotation)
    return model, "[]" if model is not None and _is_list(annotation) else ""


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(arg) for arg in typing.get_args(annotation))
    return origin in (tuple, list)


def _is_model(value: Any) -> bool:
    return inspect.isclass(value) and issubclass(value, BaseModel)


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return " | ".join(repr(a).replace("'", '"') for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin in (tuple, list):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type_name(args[1])}" if len(args) == 2 else "map"
    if _is_model(annotation):
        return "section"
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return " | ".join(str(m.value) for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


_BOUNDS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.MinLen, "min_length", "length ≥"),
    (annotated_types.MaxLen, "max_length", "length ≤"),
)


def _bounds(field: FieldInfo) -> str:
    found = []
    for item in field.metadata:
        for kind, attr, sign in _BOUNDS:
            if isinstance(item, kind):
                found.append(f"{sign} {_number(getattr(item, attr))}")
    return f" ({', '.join(found)})" if found else ""


def _default(field: FieldInfo, nested: type[BaseModel] | None) -> str:
    if field.is_required():
        return "required"
    value = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    if nested is not None and isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float | int):
        return f"`{_number(value)}`"
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(str(v) for v in value) + "]`" if value else "`[]`"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    return f'`"{value}"`' if isinstance(value, str) and value else '`""`'


def _number(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    return str(value)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0]


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())
