"""Pydantic validation errors -> one line a user can act on (the key, the problem, the allowed
keys or values)."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


def format_validation_error(
    err: ValidationError, source: str, model: type[BaseModel], prefix: str = ""
) -> str:
    """One line per problem: `source: key.path: what is wrong (got value)`."""
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(([prefix] if prefix else []) + loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            allowed = (", ".join(parent.model_fields) or "(none)") if parent else "see docs"
            where = ".".join(([prefix] if prefix else []) + loc[:-1]) or "job"
            lines.append(f"{source}: unknown key {loc[-1]!r} in {where}; allowed keys: {allowed}")
        elif e["type"] == "missing":
            lines.append(f"{source}: {key}: required key is missing")
        else:
            msg = re.sub(r"^Value error, ", "", e["msg"])
            got = e.get("input")
            # A whole section's check (its message names the key) would print the section.
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{source}: {key}: {msg}{shown}")
    return "\n".join(lines)


def _model_at(model: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _base_model_in(field.annotation)
        if model is None:
            return None
    return model


def _base_model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) or origin is typing.Annotated:
        for arg in typing.get_args(annotation):
            found = _base_model_in(arg)
            if found:
                return found
    return None
