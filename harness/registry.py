"""Registries and import paths (defined in the leaf package `harness_core`)."""

from harness_core.registry import Registry, import_object

__all__ = ["Registry", "import_object"]
