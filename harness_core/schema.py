"""What every job-file schema (the engine's sections, the pipelines' `data:`, the spaces' options)
shares beyond pydantic's defaults."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, model_validator


class NumbersNotBooleans(BaseModel):
    """A number field refuses a boolean. Pydantic takes `true` as 1 for an int field, and YAML
    reads yes/no/on/off as booleans, so `--set data.batch_size=yes` became a batch of 1."""

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if isinstance(value, bool) and field is not None and _numeric(field.annotation):
                    raise ValueError(
                        f"{name}: {str(value).lower()} is a boolean, not a number (YAML reads "
                        "yes/no/on/off as true/false)"
                    )
        return data


def _numeric(annotation: Any) -> bool:
    """Whether `annotation` takes numbers (int or float) but not booleans."""
    found = set()

    def walk(t: Any) -> None:
        if t in (int, float, bool):
            found.add(t)
        origin = typing.get_origin(t)
        if origin is typing.Union or origin is types.UnionType or origin is typing.Annotated:
            for arg in typing.get_args(t):
                walk(arg)

    walk(annotation)
    return bool(found & {int, float}) and bool not in found
