"""Kills the local Ray a driver started once that driver is gone, whatever killed it.

A driver SIGKILLed (OOM killer, `kill -9`, a scheduler) never runs `ray.shutdown()`, and some of
the local Ray's processes (its dashboard and runtime-env agents) outlive it and ignore SIGTERM.
`watch()` starts this module as a small separate process holding the read end of a pipe from
the driver; it notes the driver's descendants every second, and when the pipe closes (the driver
exited, however) it SIGKILLs those that are still there. Imports only the standard library and
psutil, so it starts in a fraction of a second.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys

import psutil

POLL_S = 1.0


def watch() -> subprocess.Popen:
    """Starts the reaper for the processes this process starts from now on (call it just
    before `ray.init`); keep the returned handle alive: its stdin is the pipe whose closing
    means the driver is gone. Processes that exist already (e.g. the stderr filter of
    harness/quiet.py, which must outlive the driver to flush its last lines) are left alone."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness.reaper", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the driver's group must not kill it first
    )


def _descendants(pid: int) -> dict[int, float]:
    """pid -> creation time of every descendant (creation time guards against pid reuse)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    known = {}
    for child in children:
        try:
            known[child.pid] = child.create_time()
        except psutil.NoSuchProcess:
            pass
    return known


def _kill(known: dict[int, float]) -> None:
    for pid, created in known.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == created:
                process.kill()
        except psutil.NoSuchProcess:
            pass


def main(driver: int) -> None:
    known: dict[int, float] = {}
    spared = set(_descendants(driver)) | {os.getpid()}
    while True:
        known.update(_descendants(driver))
        readable, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if readable and not sys.stdin.buffer.read1(1):  # EOF: the driver is gone
            break
    known.update(_descendants(driver))
    # Children of the known processes started since the last poll.
    for pid in list(known):
        known.update(_descendants(pid))
    _kill({pid: t for pid, t in known.items() if pid not in spared})


if __name__ == "__main__":
    main(int(sys.argv[1]))
