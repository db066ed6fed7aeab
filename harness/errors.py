"""Error kinds (defined in the leaf package `harness_core`; imported from here by the engine)."""

from harness_core.errors import TrialError, UserError

__all__ = ["TrialError", "UserError", "headline", "says_disk_full", "sigterm_as_interrupt"]

# How a full disk or quota reads in an error's text (Python's OSError, TensorFlow's file
# errors, h5py's "[Errno 28] Can't synchronously write data" without the phrase).
DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "[Errno 28]", "[Errno 122]")


def says_disk_full(text: str) -> bool:
    return any(s in text for s in DISK_FULL_TEXT)


def headline(message: str, limit: int = 200) -> str:
    """A trial error's one line: its first, and where that only announces the rest
    (TensorFlow's "InvalidArgumentError: Graph execution error:"), the cause TensorFlow gives
    last, before its "[[{{node ...}}]]" line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0]
    if first.endswith(":"):
        cause = next((line for line in reversed(lines[1:]) if not line.startswith("[")), None)
        if cause:
            first = f"{first} {cause}"
    return first[:limit]


def sigterm_as_interrupt() -> None:
    """SIGTERM (a scheduler, `kill`) stops the command like Ctrl-C: a KeyboardInterrupt, so
    its cleanup runs (the lock, the pid file) and it exits 130. From the main thread only."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
