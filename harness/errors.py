"""Error kinds (defined in the leaf package `harness_core`; imported from here by the engine)."""

from harness_core.errors import TrialError, UserError

__all__ = ["TrialError", "UserError"]
