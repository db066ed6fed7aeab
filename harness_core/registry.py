"""Name -> factory registries with lazy imports, and `module:attr` user import paths."""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable
from typing import Any

from harness_core.errors import UserError

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def import_object(path: str) -> Any:
    """Imports `package.module:attr` and returns the attribute."""
    module_name, _, attr = path.partition(":")
    if not _DOTTED.fullmatch(module_name) or not attr.isidentifier():
        raise UserError(f"import path {path!r} must look like 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"cannot import module {module_name!r} of {path!r}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UserError(f"module {module_name!r} has no attribute {attr!r}") from None


class Registry:
    """Maps names to objects given as lazy `module:attr` strings (or the objects themselves).

    Names containing ':' are treated as user import paths, so a job can point at its own
    class without registering it. An entry may carry `info`: a light description of the
    object (what it accepts), read by validation without importing the object's heavy module.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, str | Callable[..., Any]] = {}
        self._info: dict[str, Any] = {}

    def register(self, name: str, target: str | Callable[..., Any], info: Any = None) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = target
        if info is not None:
            self._info[name] = info

    def info(self, name: str) -> Any:
        """The entry's registered `info`, or None (user import paths have none)."""
        self.check(name)
        return self._info.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return isinstance(name, str) and (name in self._entries or ":" in name)

    def check(self, name: str) -> None:
        """Raises a UserError naming the known entries when `name` is unknown (or no name)."""
        if name in self:
            return
        if not isinstance(name, str):
            raise UserError(
                f"expected a {self.kind} name, got {name!r}; known: {', '.join(self.names())}"
            )
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"unknown {self.kind} {name!r}{hint}; known: {', '.join(self.names())}, "
            "or an import path 'package.module:Name'"
        )

    def get(self, name: str) -> Any:
        self.check(name)
        if ":" in name and name not in self._entries:
            return import_object(name)
        target = self._entries[name]
        return import_object(target) if isinstance(target, str) else target
