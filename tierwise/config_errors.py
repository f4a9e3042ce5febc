"""Config errors a person can act on: the key, the bad value, and what is allowed there."""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError


def format_validation_error(
    exc: ValidationError, where: str, data: Any, root: type[BaseModel]
) -> str:
    """Turn pydantic's errors into lines a person can act on; `root` validated `data`."""
    lines = [f"{where}: invalid tierwise config"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = _dotted_key(loc) or "(top level)"
        bad = _value_at(data, loc)
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(root, loc[:-1]))
            lines.append(f"  {key}: unknown key; allowed here: {allowed}")
            continue
        if err["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
            continue
        message = str(err["msg"]).removeprefix("Value error, ")
        got = f" (got {bad!r})" if bad is not _MISSING else ""
        lines.append(f"  {key}: {message}{got}")
    return "\n".join(lines)


_MISSING = object()


def _dotted_key(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _value_at(data: Any, loc: Sequence[int | str]) -> Any:
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node


def _allowed_keys(root: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names of the model that sits at `loc` in the config tree."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = model_in(field.annotation)
        if model is None:
            return []
    return list(model.model_fields)


def model_in(annotation: Any) -> type[BaseModel] | None:
    """Find the pydantic model inside Optional[...] / tuple[...] / list[...] annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, tuple, list):
        for arg in typing.get_args(annotation):
            found = model_in(arg)
            if found is not None:
                return found
    return None
