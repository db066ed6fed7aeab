"""Error kinds (defined in the leaf package `harness_core`; imported from here by the engine)."""

from harness_core.errors import TrialError, UserError

__all__ = ["TrialError", "UserError", "says_disk_full"]

# How a full disk or quota reads in an error's text (Python's OSError, TensorFlow's file
# errors, h5py's "[Errno 28] Can't synchronously write data" without the phrase).
DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "[Errno 28]", "[Errno 122]")


def says_disk_full(text: str) -> bool:
    return any(s in text for s in DISK_FULL_TEXT)
